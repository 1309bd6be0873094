"""Judges: which panel (or which object category) does a generated answer describe?

Every judge answers a forced choice for one `JudgeItem` and returns a `Verdict`. The rules of
DESIGN.md section 2 are shared by all of them and applied before a judge is asked: a junk
answer is a miss, and an answer essentially identical to the unsteered baseline (word
Jaccard >= 0.85) is a miss.

    truth                        exact captions/attributes of synthetic data (no model)
    captions:<model or path>     sentence-transformers similarity to the per-panel captions
    anthropic:<model>            Claude sees the strip image and the answer
    openai:<model>@<base_url>    any OpenAI-compatible chat endpoint, same prompt

Object naming (COCO boxes): give `JudgeItem.category_names`; the choice is then the 0-based
index of the category the answer names.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import os
import re
import time
import unicodedata
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from PIL import Image

from ..errors import GazeheadsError

BASELINE_JACCARD = 0.85  # answers at least this similar to the unsteered answer are misses
PROMPT_VERSION = 1  # part of the LLM verdict cache key: bump when the judge prompt changes


class JudgeError(GazeheadsError):
    """A judge that cannot run: missing key, endpoint, model or input it needs."""


# --------------------------------------------------------------------------- items and verdicts


@dataclass
class JudgeItem:
    """One answer to judge, with what a judge may need to place it.

    `captions` / `attributes`: per-panel ground truth (synthetic data). `category_names`
    switches to object naming. `key` identifies the item (strip, condition, target) for caching.
    """

    text: str
    n_panels: int = 6
    captions: list[str] | None = None
    attributes: list[dict] | None = None
    baseline: str | None = None
    image: Image.Image | None = None
    category_names: list[str] | None = None
    key: str = ""

    def to_dict(self, include_image: bool = False) -> dict:
        """JSON-serialisable; the image (base64 PNG under "image_png") only when asked for."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "image"}
        if include_image and self.image is not None:
            data["image_png"] = png_base64(self.image)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "JudgeItem":
        known = {f.name for f in fields(cls)} - {"image"}
        item = cls(**{k: v for k, v in data.items() if k in known})
        if data.get("image_png"):
            item.image = Image.open(io.BytesIO(base64.b64decode(data["image_png"]))).convert("RGB")
        return item


@dataclass
class Verdict:
    """A judge's forced choice: a 1-based panel, or for object naming an index into category_names.

    `choice` is kept for the record even when the verdict cannot count as a hit.
    """

    choice: int | None
    junk: bool = False
    same_as_baseline: bool = False
    judge: str = ""
    detail: dict = field(default_factory=dict)

    def hit(self, target: int) -> bool:
        """True when the answer describes `target` and neither junk nor the baseline answer."""
        return self.choice is not None and self.choice == target and not self.junk and not self.same_as_baseline

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Verdict":
        return cls(
            choice=data.get("choice"),
            junk=bool(data.get("junk", False)),
            same_as_baseline=bool(data.get("same_as_baseline", False)),
            judge=str(data.get("judge", "")),
            detail=dict(data.get("detail") or {}),
        )


# --------------------------------------------------------------------------- shared rules


def normalize(text: str) -> str:
    """Lowercase, punctuation to spaces, single spaces: 'Red-Circle!' -> 'red circle'."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    return " ".join(re.sub(r"[\W_]+", " ", text).split())


def words(text: str) -> list[str]:
    return normalize(text).split()


def word_jaccard(a: str, b: str) -> float:
    """|A & B| / |A | B| over the sets of normalised words; two empty texts count as identical."""
    wa, wb = set(words(a)), set(words(b))
    if not wa and not wb:
        return 1.0
    return len(wa & wb) / len(wa | wb)


def junk_reason(
    text: str,
    *,
    max_word_share: float = 0.5,
    min_words: int = 6,
    min_distinct_ratio: float = 0.25,
    min_words_distinct: int = 12,
) -> str | None:
    """Why `text` is junk, or None.

    Junk: empty; no word with a letter; one word more than `max_word_share` of at least
    `min_words` words; or a loop (fewer than `min_distinct_ratio` distinct words among at
    least `min_words_distinct`).
    """
    ws = words(text)
    if not ws:
        return "empty"
    if not any(ch.isalpha() for w in ws for ch in w):
        return "no alphabetic word"
    if len(ws) >= min_words and Counter(ws).most_common(1)[0][1] > max_word_share * len(ws):
        return "repetition"
    if len(ws) >= min_words_distinct and len(set(ws)) < min_distinct_ratio * len(ws):
        return "repetition"
    return None


def _with_baseline_rule(verdict: Verdict, item: JudgeItem, threshold: float | None) -> Verdict:
    if item.baseline is not None:
        similarity = word_jaccard(item.text, item.baseline)
        verdict.detail["baseline_jaccard"] = round(similarity, 4)
        verdict.same_as_baseline = threshold is not None and similarity >= threshold
    return verdict


class Judge:
    """One interface: `check_ready()` before any generation, then `judge(item) -> Verdict`."""

    name: str = "judge"
    baseline_threshold: float | None = BASELINE_JACCARD

    def check_ready(self) -> None:
        """Raise a JudgeError now if judging would fail later (missing key, model, endpoint)."""

    def judge(self, item: JudgeItem) -> Verdict:
        """Apply the junk rules, ask this judge, then apply the near-identical-to-baseline rule."""
        reason = junk_reason(item.text)
        if reason is not None:
            return Verdict(None, junk=True, judge=self.name, detail={"junk": reason})
        return _with_baseline_rule(self._choose(item), item, self.baseline_threshold)

    def judge_many(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        return [self.judge(item) for item in items]

    def _choose(self, item: JudgeItem) -> Verdict:
        raise NotImplementedError


# --------------------------------------------------------------------------- ground truth

# A few COCO categories and the everyday words a model uses for them. Plurals are derived.
COCO_SYNONYMS: dict[str, list[str]] = {
    "person": ["man", "woman", "boy", "girl", "child", "kid", "people", "player", "lady", "guy", "baby"],
    "bicycle": ["bike"],
    "motorcycle": ["motorbike", "scooter"],
    "airplane": ["plane", "aeroplane", "jet", "aircraft"],
    "car": ["automobile", "taxi"],
    "bus": ["coach"],
    "truck": ["lorry", "pickup"],
    "boat": ["ship", "sailboat", "canoe", "kayak"],
    "couch": ["sofa"],
    "tv": ["television", "monitor", "screen"],
    "laptop": ["notebook computer", "computer"],
    "cell phone": ["phone", "cellphone", "smartphone", "mobile phone"],
    "dining table": ["table"],
    "potted plant": ["plant", "houseplant", "flower pot"],
    "sports ball": ["ball", "football", "soccer ball", "baseball", "basketball", "tennis ball"],
    "donut": ["doughnut"],
    "hair drier": ["hair dryer", "hairdryer"],
    "cup": ["mug"],
    "handbag": ["purse", "bag"],
    "wine glass": ["glass"],
    "teddy bear": ["teddy", "stuffed animal"],
    "fire hydrant": ["hydrant"],
    "traffic light": ["stoplight", "traffic signal"],
    "remote": ["remote control"],
    "mouse": ["computer mouse"],
    "bed": ["mattress"],
    "cow": ["cattle", "calf"],
    "sheep": ["lamb"],
    "horse": ["pony"],
    "dog": ["puppy"],
    "cat": ["kitten", "kitty"],
}

_IRREGULAR_PLURALS = {"person": "people", "mouse": "mice", "child": "children", "man": "men",
                      "woman": "women", "foot": "feet", "tooth": "teeth", "goose": "geese"}


def plural_forms(word: str) -> set[str]:
    """The word and its likely plurals: box -> boxes, pony -> ponies, knife -> knives, mouse -> mice."""
    forms = {word, word + "s"}
    if word.endswith(("s", "x", "z", "ch", "sh", "o")):
        forms.add(word + "es")
    if len(word) > 1 and word.endswith("y") and word[-2] not in "aeiou":
        forms.add(word[:-1] + "ies")
    if word.endswith("fe"):
        forms.add(word[:-2] + "ves")
    elif word.endswith("f"):
        forms.add(word[:-1] + "ves")
    if word in _IRREGULAR_PLURALS:
        forms.add(_IRREGULAR_PLURALS[word])
    return forms


def _phrase_variants(phrase: str) -> list[tuple[str, ...]]:
    """Word tuples of `phrase` with its last word in every plural form."""
    ws = words(phrase)
    if not ws:
        return []
    return [tuple(ws[:-1]) + (last,) for last in sorted(plural_forms(ws[-1]))]


@dataclass(frozen=True)
class _Mention:
    start: int
    length: int
    label: int


def _mentions(answer: Sequence[str], phrases: Sequence[tuple[tuple[str, ...], int]]) -> list[_Mention]:
    """Every whole-word occurrence of each labelled phrase in the answer's words."""
    found = []
    for phrase, label in phrases:
        n = len(phrase)
        for start in range(len(answer) - n + 1):
            if tuple(answer[start : start + n]) == phrase:
                found.append(_Mention(start, n, label))
    return found


def _first_mention(found: Sequence[_Mention]) -> tuple[list[int], _Mention]:
    """The labels of the first phrase mentioned; among overlapping mentions the longest wins.

    More than one label comes back only when identical phrases name several labels.
    """
    start = min(m.start for m in found)
    end = max(m.start + m.length for m in found if m.start == start)
    overlapping = [m for m in found if m.start < end]
    longest = max(m.length for m in overlapping)
    best = min((m for m in overlapping if m.length == longest), key=lambda m: m.start)
    tied = sorted({m.label for m in overlapping if m.length == longest and m.start == best.start})
    return tied, best


def _mention_order(found: Sequence[_Mention]) -> list[int]:
    order: list[int] = []
    for m in sorted(found, key=lambda m: (m.start, -m.length)):
        if m.label not in order:
            order.append(m.label)
    return order


class GroundTruthJudge(Judge):
    """Exact matching against synthetic ground truth.

    Panels: the panel whose caption the answer mentions first (whole words, after
    normalisation; the longest of overlapping matches wins). Objects: the category whose
    name, a synonym or a plural is mentioned first. An answer naming nothing is junk.

    The near-identical-to-baseline rule is off by default here: the answer is checked
    against exact ground truth, so an unsteered answer that happens to name the target
    (panel 1 for the bundled model's ambiguous question) is a correct forced choice, and
    chance stays 1/N. Pass `baseline_threshold=0.85` to apply the paper's rule anyway.
    """

    name = "truth"

    def __init__(
        self,
        *,
        synonyms: Mapping[str, Sequence[str]] | None = None,
        attribute_keys: Sequence[str] = ("colour", "shape"),
        baseline_threshold: float | None = None,
    ) -> None:
        self.synonyms = COCO_SYNONYMS if synonyms is None else dict(synonyms)
        self.attribute_keys = tuple(attribute_keys)
        self.baseline_threshold = baseline_threshold

    def _choose(self, item: JudgeItem) -> Verdict:
        if item.category_names is not None:
            return self._name_object(item)
        return self._name_panel(item)

    def panel_captions(self, item: JudgeItem) -> list[str]:
        """Captions given, else built from attributes ("caption" or the attribute_keys joined)."""
        if item.captions is not None:
            captions = list(item.captions)
        elif item.attributes is not None:
            captions = [a.get("caption") or " ".join(str(a[k]) for k in self.attribute_keys if k in a)
                        for a in item.attributes]
        else:
            raise JudgeError("The ground-truth judge needs per-panel captions or attributes.",
                             "Use synthetic data (gazeheads data synth), or a judge that needs no ground truth: "
                             "captions:<model>, anthropic:<model> or openai:<model>@<url>.")
        if len(captions) != item.n_panels:
            raise JudgeError(f"{len(captions)} captions for a {item.n_panels}-panel strip.",
                             "Give exactly one caption (or attribute dict) per panel.")
        return captions

    def _name_panel(self, item: JudgeItem) -> Verdict:
        captions = self.panel_captions(item)
        phrases = [(tuple(words(c)), k) for k, c in enumerate(captions, start=1) if words(c)]
        return self._verdict(item.text, phrases, "matches no panel caption", lambda k: captions[k - 1])

    def _name_object(self, item: JudgeItem) -> Verdict:
        names = list(item.category_names or [])
        phrases = []
        for i, name in enumerate(names):
            for term in [name, *self.synonyms.get(name, [])]:
                phrases += [(variant, i) for variant in _phrase_variants(term)]
        return self._verdict(item.text, phrases, "names no category", lambda i: names[i])

    def _verdict(self, text: str, phrases, nothing: str, describe: Callable[[int], str]) -> Verdict:
        found = _mentions(words(text), phrases)
        if not found:
            return Verdict(None, junk=True, judge=self.name, detail={"junk": nothing})
        tied, best = _first_mention(found)
        detail: dict = {"matched": describe(tied[0]), "mentioned": _mention_order(found)}
        if len(tied) > 1:
            detail.update(ambiguous=True, tied=tied)
        return Verdict(tied[0], judge=self.name, detail=detail)


# --------------------------------------------------------------------------- caption similarity

Encoder = Callable[[list[str]], np.ndarray]


def _load_sentence_transformer(model_name_or_path: str, device: str | None) -> Encoder:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise JudgeError("The caption-similarity judge needs sentence-transformers, which is not installed.",
                         "pip install 'gazeheads[judges]' (or: pip install sentence-transformers).") from None
    try:
        model = SentenceTransformer(str(model_name_or_path), device=device)
    except Exception as exc:  # the library raises many kinds (OSError, ValueError, HTTP errors)
        raise JudgeError(f"Could not load the sentence-transformers model {model_name_or_path!r}: {exc}",
                         "Give a folder saved with SentenceTransformer.save(), or a model name that is "
                         "in the local Hugging Face cache or can be downloaded.") from exc

    def encode(texts: list[str]) -> np.ndarray:
        return np.asarray(model.encode(list(texts), convert_to_numpy=True, show_progress_bar=False))

    return encode


class CaptionSimilarityJudge(Judge):
    """Forced 1-of-N by cosine similarity between the answer and each panel's caption.

    The embedding model is a sentence-transformers model given by name or local path, loaded on
    first use (or by `check_ready`); `encoder` (texts -> array of shape (n, d)) replaces it, e.g.
    in tests. A best similarity below `min_similarity` is junk (the answer matches no panel).
    """

    def __init__(
        self,
        model_name_or_path: str | Path | None = None,
        device: str | None = None,
        *,
        encoder: Encoder | None = None,
        min_similarity: float = 0.2,
        baseline_threshold: float = BASELINE_JACCARD,
        cache_size: int = 20_000,
    ) -> None:
        if model_name_or_path is None and encoder is None:
            raise JudgeError("The caption-similarity judge needs an embedding model.",
                             "Give a sentence-transformers model name or path, e.g. captions:all-MiniLM-L6-v2.")
        self.model_name_or_path = model_name_or_path
        self.device = device
        self.name = f"captions:{model_name_or_path if model_name_or_path is not None else 'custom'}"
        self.min_similarity = min_similarity
        self.baseline_threshold = baseline_threshold
        self._encoder = encoder
        self._cache: dict[str, np.ndarray] = {}
        self._cache_size = cache_size

    def check_ready(self) -> None:
        self._encode_fn()

    def _encode_fn(self) -> Encoder:
        if self._encoder is None:
            self._encoder = _load_sentence_transformer(str(self.model_name_or_path), self.device)
        return self._encoder

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm embeddings, one row per text; repeated texts (captions) are encoded once."""
        known = {t: self._cache[t] for t in texts if t in self._cache}
        missing = [t for t in dict.fromkeys(texts) if t not in known]
        if missing:
            vectors = np.asarray(self._encode_fn()(missing), dtype=np.float64).reshape(len(missing), -1)
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            known.update(zip(missing, vectors))
            if len(self._cache) + len(missing) > self._cache_size:
                self._cache.clear()
            self._cache.update(zip(missing, vectors))
        return np.stack([known[t] for t in texts])

    def _candidates(self, item: JudgeItem) -> tuple[list[str], int]:
        """Texts to choose among and the offset of the first choice (1 for panels, 0 for categories)."""
        if item.category_names is not None:
            return list(item.category_names), 0
        if item.captions is None:
            raise JudgeError("The caption-similarity judge needs per-panel captions.",
                             "Use strips with captions (e.g. baulab/openai-comic-strips or captions.json in each "
                             "comic folder), or an LLM judge that looks at the image.")
        if len(item.captions) != item.n_panels:
            raise JudgeError(f"{len(item.captions)} captions for a {item.n_panels}-panel strip.",
                             "Give exactly one caption per panel.")
        return list(item.captions), 1

    def _choose(self, item: JudgeItem) -> Verdict:
        candidates, offset = self._candidates(item)
        vectors = self.embed([item.text, *candidates])
        similarities = vectors[1:] @ vectors[0]
        best = int(np.argmax(similarities))
        detail = {"similarities": [round(float(s), 4) for s in similarities]}
        if similarities[best] < self.min_similarity:
            detail.update(junk="below min_similarity", best=best + offset)
            return Verdict(None, junk=True, judge=self.name, detail=detail)
        return Verdict(best + offset, judge=self.name, detail=detail)


# --------------------------------------------------------------------------- LLM judges


def png_base64(image: Image.Image) -> str:
    """The image as base64-encoded PNG (what both chat APIs accept inline)."""
    if image.mode not in ("RGB", "RGBA", "L"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def judge_prompt(item: JudgeItem) -> str:
    """The forced-choice question sent with the image."""
    if item.category_names is not None:
        options = "\n".join(f"{i}. {name}" for i, name in enumerate(item.category_names, start=1))
        return (
            "The image is a photo. A vision-language model was asked what is in the picture and answered:\n\n"
            f'"""{item.text}"""\n\n'
            f"Which one of these object categories does the answer name?\n{options}\n\n"
            'Reply with JSON only: {"category": <number>}, or {"category": null} if the answer is empty, '
            "garbled or names none of them."
        )
    n = item.n_panels
    return (
        f"The image is a comic strip of {n} panels, numbered 1 to {n} from left to right. "
        "A vision-language model described one of the panels:\n\n"
        f'"""{item.text}"""\n\n'
        "Which panel does the description describe? "
        f'Reply with JSON only: {{"panel": <number from 1 to {n}>}}, or {{"panel": null}} if the '
        "description is empty, garbled or matches no panel."
    )


_CHOICE_KEYS = ("panel", "category", "choice")


def _as_choice(value: Any, n_options: int) -> tuple[int | None, str]:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("null", "none", "")):
        return None, "null"
    if isinstance(value, bool):
        return None, "unparsed"
    if isinstance(value, (int, float)) and float(value).is_integer():
        k = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        k = int(value.strip())
    else:
        return None, "unparsed"
    return (k, "ok") if 1 <= k <= n_options else (None, "unparsed")


def parse_choice(reply: str, n_options: int) -> tuple[int | None, str]:
    """A 1-based choice from a judge's reply, and how it was read: "ok", "null" or "unparsed".

    Accepts {"panel": k} (or "category"/"choice") anywhere in the reply, code fences and
    prose around it, a number given as a string, and a bare number as the whole reply.
    """
    for blob in re.findall(r"\{[^{}]*\}", reply):
        try:
            data = json.loads(blob)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):
            for key in _CHOICE_KEYS:
                if key in data:
                    return _as_choice(data[key], n_options)
    match = re.search(r'(?:panel|category|choice)"?\s*[:=]\s*"?(\d+|null|none)', reply, re.IGNORECASE)
    if match:
        return _as_choice(match.group(1), n_options)
    bare = reply.strip().strip("`").strip().rstrip(".")
    if bare.isdigit() or bare.lower() in ("null", "none"):
        return _as_choice(bare, n_options)
    return None, "unparsed"


class VerdictCache:
    """LLM verdicts by key, in memory and (given a path) appended to a JSONL file.

    Every entry is flushed as it is written; a torn last line (a killed run) is ignored, so
    re-judging a run never pays twice for the same answer.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.entries: dict[str, dict] = {}
        if self.path is not None and self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(entry, dict) and "key" in entry:
                    self.entries[entry["key"]] = entry

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def put(self, key: str, entry: dict) -> None:
        entry = {"key": key, **entry}
        self.entries[key] = entry
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def _sha256(data: str | bytes) -> str:
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


_RETRYABLE_STATUS = {408, 409, 429}  # plus every 5xx (Anthropic's "overloaded" is 529)


class _ChatJudge(Judge):
    """Shared machinery of the LLM judges: prompt, HTTP with retries, reply parsing, cache.

    HTTP goes through the standard library (urllib): one JSON POST per verdict needs no
    client library, and the judges then work in any environment gazeheads installs in.
    """

    provider = ""
    key_env = ""
    base_url_env = ""
    default_base_url: str | None = None

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        cache: str | Path | VerdictCache | None = None,
        max_retries: int = 5,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        timeout_s: float = 120.0,
        max_tokens: int = 64,
        extra_body: Mapping[str, Any] | None = None,
        require_key: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        baseline_threshold: float = BASELINE_JACCARD,
    ) -> None:
        self.model = model
        self.api_key = api_key
        self.base_url = base_url or os.environ.get(self.base_url_env) or self.default_base_url
        self.cache = cache if isinstance(cache, VerdictCache) else VerdictCache(cache)
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.extra_body = dict(extra_body or {})
        self.require_key = require_key
        self.sleep = sleep
        self.baseline_threshold = baseline_threshold
        self.requests_made = 0

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self.provider}:{self.model}"

    def _key(self) -> str | None:
        return self.api_key or os.environ.get(self.key_env) or None

    def check_ready(self) -> None:
        """Fail before any generation when the model, key or endpoint is missing."""
        if not self.model:
            raise JudgeError(f"No model named for the {self.provider} judge.", f"Write {self.provider}:<model>.")
        if self.require_key and not self._key():
            raise JudgeError(f"No API key for the {self.provider} judge.",
                             f"Set the environment variable {self.key_env} or pass api_key=...")
        if not self.base_url:
            raise JudgeError(f"No endpoint for the {self.provider} judge.",
                             f"Write {self.provider}:<model>@<base_url> (e.g. http://localhost:8000/v1, or "
                             f"https://api.openai.com/v1 for OpenAI) or set {self.base_url_env}.")
        if not self.base_url.startswith(("http://", "https://")):
            raise JudgeError(f"The {self.provider} judge's endpoint {self.base_url!r} is not an http(s) URL.",
                             "Give a base URL such as http://localhost:8000/v1.")

    # -- provider-specific

    def _request(self, prompt: str, image_b64: str) -> tuple[str, dict[str, str], dict]:
        """(url, headers, JSON body) of one chat request."""
        raise NotImplementedError

    def _reply_text(self, response: dict) -> str:
        raise NotImplementedError

    # -- shared

    def cache_key(self, item: JudgeItem) -> str:
        """Judge name + model + item key (or image hash) + hash of the answer text."""
        item_id = item.key or ("image:" + _sha256(png_base64(item.image)) if item.image is not None else "")
        options = item.category_names if item.category_names is not None else item.n_panels
        return _sha256(json.dumps([self.name, PROMPT_VERSION, item_id, options, _sha256(item.text)]))

    def _choose(self, item: JudgeItem) -> Verdict:
        key = self.cache_key(item)
        entry = self.cache.get(key)
        cached = entry is not None
        if entry is None:
            entry = self._ask(item)
            if entry["status"] != "unparsed":  # an unreadable reply is asked again next time
                self.cache.put(key, entry)
        choice = entry["choice"]
        if item.category_names is not None and choice is not None:
            choice -= 1  # the prompt numbers categories from 1; verdicts index category_names
        detail = {"reply": entry["reply"], "status": entry["status"], "cached": cached}
        return Verdict(choice, junk=entry["status"] == "null", judge=self.name, detail=detail)

    def _ask(self, item: JudgeItem) -> dict:
        self.check_ready()
        if item.image is None:
            raise JudgeError(f"The {self.provider} judge needs the image of each item.",
                             "Pass JudgeItem.image (the strip or photo the answer is about).")
        url, headers, body = self._request(judge_prompt(item), png_base64(item.image))
        reply = self._reply_text(self._post(url, headers, {**body, **self.extra_body}))
        n_options = len(item.category_names) if item.category_names is not None else item.n_panels
        choice, status = parse_choice(reply, n_options)
        return {"choice": choice, "status": status, "reply": reply, "judge": self.name,
                "item": item.key, "text_sha256": _sha256(item.text)}

    def _post(self, url: str, headers: dict[str, str], body: dict) -> dict:
        """POST JSON; retry 408/409/429/5xx and network errors with exponential backoff."""
        data = json.dumps(body).encode("utf-8")
        last = ""
        for attempt in range(self.max_retries + 1):
            wait = min(self.max_backoff_s, self.backoff_s * 2**attempt)
            request = urllib.request.Request(url, data=data, method="POST",
                                             headers={"Content-Type": "application/json", **headers})
            try:
                self.requests_made += 1
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return json.loads(response.read().decode("utf-8"))
            except urllib.error.HTTPError as exc:
                text = exc.read().decode("utf-8", "replace")[:500]
                if exc.code not in _RETRYABLE_STATUS and exc.code < 500:
                    raise JudgeError(f"The {self.name} judge's endpoint answered HTTP {exc.code}: {text}",
                                     self._fix_for(exc.code)) from None
                last = f"HTTP {exc.code}: {text}"
                after = _retry_after(exc.headers)
                wait = min(self.max_backoff_s, after) if after is not None else wait
            except (urllib.error.URLError, OSError, http.client.HTTPException, json.JSONDecodeError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            if attempt < self.max_retries:
                self.sleep(wait)
        raise JudgeError(f"The {self.name} judge failed after {self.max_retries + 1} attempts ({last}).",
                         f"Check that {self.base_url} is reachable and within its rate limits; rerun to re-judge "
                         "(verdicts already received are cached).")

    def _fix_for(self, status: int) -> str:
        if status in (401, 403):
            return f"Check the API key ({self.key_env} or api_key=...)."
        if status == 404:
            return f"Check the model name {self.model!r} and the endpoint {self.base_url!r}."
        return "Check the model name and that it accepts images; extra_body= adds request fields."


class AnthropicJudge(_ChatJudge):
    """Claude through the Messages API: the image and the answer, a forced-choice JSON reply."""

    provider = "anthropic"
    key_env = "ANTHROPIC_API_KEY"
    base_url_env = "ANTHROPIC_BASE_URL"
    default_base_url = "https://api.anthropic.com"
    api_version = "2023-06-01"

    def _request(self, prompt: str, image_b64: str) -> tuple[str, dict[str, str], dict]:
        headers = {"x-api-key": self._key() or "", "anthropic-version": self.api_version}
        content = [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": image_b64}},
            {"type": "text", "text": prompt},
        ]
        body = {"model": self.model, "max_tokens": self.max_tokens, "temperature": 0,
                "messages": [{"role": "user", "content": content}]}
        return self.base_url.rstrip("/") + "/v1/messages", headers, body

    def _reply_text(self, response: dict) -> str:
        blocks = response.get("content") or []
        return "".join(b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text")


class OpenAICompatibleJudge(_ChatJudge):
    """Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp, Ollama, ...).

    `base_url` includes the API root, e.g. http://localhost:8000/v1. For a local server
    without authentication pass `require_key=False`.
    """

    provider = "openai"
    key_env = "OPENAI_API_KEY"
    base_url_env = "OPENAI_BASE_URL"

    def __init__(self, base_url: str | None, model: str, **kwargs: Any) -> None:
        super().__init__(model, base_url=base_url, **kwargs)

    def _request(self, prompt: str, image_b64: str) -> tuple[str, dict[str, str], dict]:
        key = self._key()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        content = [
            {"type": "text", "text": prompt},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image_b64}"}},
        ]
        body = {"model": self.model, "max_tokens": self.max_tokens, "temperature": 0,
                "messages": [{"role": "user", "content": content}]}
        return self.base_url.rstrip("/") + "/chat/completions", headers, body

    def _reply_text(self, response: dict) -> str:
        try:
            content = response["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            return ""
        if isinstance(content, list):  # content parts
            return "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return content or ""


# --------------------------------------------------------------------------- by name

JUDGE_SPECS = ("truth", "captions:<model name or path>", "anthropic:<model>", "openai:<model>@<base_url>")


def make_judge(spec: str, cache_dir: str | Path | None = None, **kwargs: Any) -> Judge:
    """A judge from its command-line spec; `kwargs` go to the judge's constructor. Judges that call a
    model keep their verdicts in `cache_dir`/verdicts.jsonl."""
    kind, _, rest = spec.partition(":")
    if cache_dir is not None and kind.strip().lower() in ("anthropic", "openai"):
        kwargs.setdefault("cache", Path(cache_dir) / "verdicts.jsonl")
    kind = kind.strip().lower()
    rest = rest.strip()
    if kind == "truth" and not rest:
        return GroundTruthJudge(**kwargs)
    if kind == "captions" and rest:
        return CaptionSimilarityJudge(rest, **kwargs)
    if kind == "anthropic" and rest:
        return AnthropicJudge(rest, **kwargs)
    if kind == "openai" and rest:
        match = re.fullmatch(r"(.+?)@(https?://.+)", rest)
        model, base_url = (match.group(1), match.group(2)) if match else (rest, kwargs.pop("base_url", None))
        return OpenAICompatibleJudge(base_url, model, **kwargs)
    raise JudgeError(f"Unknown judge {spec!r}.", f"Use one of: {', '.join(JUDGE_SPECS)}.")
