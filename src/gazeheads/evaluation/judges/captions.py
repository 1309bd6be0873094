"""The caption-similarity judge: sentence-transformers similarity between the answer and each caption."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .base import Judge, JudgeError, JudgeItem, Verdict
from .rules import BASELINE_JACCARD

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

    def _choose_many(self, items: Sequence[JudgeItem], chunk: int = 512) -> list[Verdict]:
        """Answers and captions embedded `chunk` items per encoder call (repeated texts once)."""
        verdicts = []
        for start in range(0, len(items), chunk):
            part = items[start : start + chunk]
            self.embed([t for item in part for t in (item.text, *self._candidates(item)[0])])
            verdicts += [self._choose(item) for item in part]  # reads the embeddings just cached
        return verdicts

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
