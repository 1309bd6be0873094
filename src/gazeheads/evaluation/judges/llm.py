"""What every LLM judge shares: the verdict cache, direct requests, vendor batches and their resumption.

`judge_many` is the efficient path. Cached verdicts cost nothing; open batches an earlier
run left in the ledger are waited for and read; what is left goes out as vendor batches
(above `batch_min` answers, or always with `batch=always`) or one request at a time with
the client's own retries. Every verdict is in the cache file before the next is read.
A vendor subclass says how to build, send and read requests (`AnthropicJudge`, `OpenAIJudge`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence

from PIL import Image

from ...progress import progress_bar
from .base import Judge, JudgeError, JudgeItem, Verdict
from .cache import BATCHES_FILE, VERDICTS_FILE, BatchLedger, VerdictCache
from .prompt import PROMPT_VERSION, encode_image, judge_prompt, parse_reply
from .rules import BASELINE_JACCARD
from .sdk import import_sdk
from .spec import check_base_url


def _sha256(data: str | bytes) -> str:
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def image_digest(image: Image.Image) -> str:
    """A hash of the pixels (mode, size and bytes), to key items that have no `key`."""
    return _sha256(f"{image.mode}:{image.size}:".encode() + image.tobytes())


@dataclass
class BatchStatus:
    """Where a vendor batch stands: done when `ended`; `failure` when the vendor refused it as a whole."""

    ended: bool
    state: str
    done: int = 0
    total: int = 0
    failure: str | None = None


@dataclass
class BatchResult:
    """One answer of a batch: the reply text, or why there is none.

    `retry_in_batch`: the request was never processed (expired, canceled) and may go out in
    a new batch; otherwise it is asked directly, where its error surfaces.
    """

    key: str
    reply: str | None
    failure: str | None = None
    retry_in_batch: bool = False


class LLMJudge(Judge):
    """A judge that asks a vendor's model, through the vendor's own Python client.

    Args (every one can also be written in the spec, e.g. `anthropic:MODEL,batch=always`):
        model, base_url: the model and the API root (default: the vendor's, or the
            ANTHROPIC_BASE_URL / OPENAI_BASE_URL environment variable).
        api_key: the key; default the environment variable `key_env` (ANTHROPIC_API_KEY /
            OPENAI_API_KEY). `require_key=False` for local servers without authentication.
        cache_dir: the run folder: verdicts go to `verdicts.jsonl`, batch ids to
            `judge-batches.jsonl` there. None keeps verdicts in memory only.
        batch: "auto" (a vendor batch from `batch_min` uncached answers up, where the endpoint
            has a batch API), "always" or "never". `batch_size` caps the requests per batch.
        poll_s, batch_wait_s: how often a batch is polled, and how long to wait before
            stopping with a JudgeError that says to rerun (None: until it ends).
        max_tokens (a ceiling; thinking models spend part of it), temperature (None: not
            sent; OpenAI endpoints only), timeout_s, max_retries (the client's own retries).
        image_format, max_side: how the image is sent ("jpeg" or "png"; longer side cap).
        ask_same_as_baseline: also pay for answers the baseline rule already counts as
            misses (default False: they get `same_as_baseline` without a request).
        sleep: the wait between polls (tests pass a fake); client: a ready vendor client.
    """

    provider: ClassVar[str] = ""
    default_key_env: ClassVar[str] = ""
    base_url_env: ClassVar[str] = ""
    default_base_url: ClassVar[str] = ""
    max_batch_requests: ClassVar[int] = 10_000
    max_batch_bytes: ClassVar[int] = 180 * 2**20

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        cache_dir: str | Path | None = None,
        batch: str = "auto",
        batch_min: int = 100,
        batch_size: int | None = None,
        poll_s: float = 30.0,
        batch_wait_s: float | None = None,
        max_tokens: int = 1024,
        temperature: float | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 5,
        key_env: str | None = None,
        require_key: bool = True,
        image_format: str = "jpeg",
        max_side: int | None = 1568,
        baseline_threshold: float | None = BASELINE_JACCARD,
        ask_same_as_baseline: bool = False,
        progress: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        client: Any = None,
    ) -> None:
        if batch not in ("auto", "always", "never"):
            raise JudgeError(f"batch={batch!r} is not a batch mode.", "Use batch=auto, always or never.")
        if image_format not in ("jpeg", "png"):
            raise JudgeError(f"image_format={image_format!r} is not supported.", "Use image_format=jpeg or png.")
        self.model = model
        self.base_url = (base_url or os.environ.get(self.base_url_env) or self.default_base_url).rstrip("/")
        self.api_key = api_key
        self.key_env = key_env or self.default_key_env
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.cache = VerdictCache(self.cache_dir / VERDICTS_FILE if self.cache_dir else None)
        self.ledger = BatchLedger(self.cache_dir / BATCHES_FILE if self.cache_dir else None)
        self.batch, self.batch_min, self.batch_size = batch, batch_min, batch_size
        self.poll_s, self.batch_wait_s = poll_s, batch_wait_s
        self.max_tokens, self.temperature = max_tokens, temperature
        self.timeout_s, self.max_retries = timeout_s, max_retries
        self.require_key = require_key
        self.image_format, self.max_side = image_format, max_side
        self.baseline_threshold = baseline_threshold
        self.ask_same_as_baseline = ask_same_as_baseline
        self.progress, self.sleep = progress, sleep
        self._client_obj = client
        self._sdk: ModuleType | None = None

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self.provider}:{self.model}"

    # ------------------------------------------------------------------ readiness

    def _key(self) -> str | None:
        return self.api_key or os.environ.get(self.key_env) or None

    def check_ready(self) -> None:
        """Fail before any generation: no model, a bad base URL, the client package or the key missing."""
        if not self.model:
            raise JudgeError(f"No model named for the {self.provider} judge.", f"Write {self.provider}:<model>.")
        check_base_url(self.base_url)
        self._sdk = self._sdk or import_sdk(self.provider)
        if self.require_key and not self._key() and self._client_obj is None:
            raise JudgeError(f"No API key for the {self.name} judge.",
                             f"Set the environment variable {self.key_env} (or pass api_key=...); for a local "
                             "server without authentication write require_key=false.")

    def _client(self) -> Any:
        """The vendor's client, made on first use (or the one passed as `client=`)."""
        if self._client_obj is None:
            self.check_ready()  # imports the package
            self._client_obj = self._new_client(self._sdk)
        self._sdk = self._sdk or import_sdk(self.provider)  # a client passed in still needs the error types
        return self._client_obj

    @property
    def batch_supported(self) -> bool:
        """Whether `batch=auto` may use the endpoint's batch API."""
        return True

    def _use_batch(self, n: int) -> bool:
        if self.batch == "auto":
            return self.batch_supported and n >= self.batch_min
        return self.batch == "always"

    # ------------------------------------------------------------------ verdicts

    def cache_key(self, item: JudgeItem) -> str:
        """Judge, prompt version, item (key or image hash), options, answer and baseline.

        64 hex digits: also the request's custom id in a vendor batch.
        """
        item_id = item.key or ("image:" + image_digest(item.image) if item.image is not None else "")
        options = item.category_names if item.category_names is not None else item.n_panels
        baseline = _sha256(item.baseline) if item.baseline is not None else None
        return _sha256(json.dumps([self.name, PROMPT_VERSION, item_id, options, _sha256(item.text), baseline]))

    def _choose_many(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        keys = [self.cache_key(item) for item in items]
        found: dict[str, tuple[dict, bool]] = {}
        pending: dict[str, JudgeItem] = {}
        for key, item in zip(keys, items):
            entry = self.cache.get(key)
            if entry is not None:
                found[key] = (entry, True)
            else:
                pending.setdefault(key, item)
        if pending:
            self.check_ready()
            if any(item.image is None for item in pending.values()):
                raise JudgeError(f"The {self.provider} judge needs the image of each item.",
                                 "Pass JudgeItem.image (the strip or photo the answer is about).")
            self._resolve(pending, found)
        return [self._verdict(item, *found[key]) for key, item in zip(keys, items)]

    def _resolve(self, pending: dict[str, JudgeItem], found: dict[str, tuple[dict, bool]]) -> None:
        """Answer every pending item: batches left open by an earlier run, new batches, then directly."""
        direct_only: set[str] = set()
        for record in self.ledger.open_batches(self.name, self.base_url):
            if pending.keys() & set(record.keys):
                self._collect(record.batch_id, pending, found, direct_only)
        for _ in range(2):  # a second round for requests a batch never processed (expired, canceled)
            batchable = {k: item for k, item in pending.items() if k not in direct_only}
            if not batchable or not self._use_batch(len(batchable)):
                break
            self._batch_round(batchable, pending, found, direct_only)
        image_memo: dict[int, tuple[str, str]] = {}
        for key in list(pending):
            item = pending.pop(key)
            data, media_type = self._encoded(item.image, image_memo, keep=1)
            params = self._params(judge_prompt(item), data, media_type)
            reply = self._call(self._send_one, params, doing="asking for a verdict")
            found[key] = (self._record(key, item, reply, via="direct"), False)

    def _record(self, key: str, item: JudgeItem, reply: str, via: str) -> dict:
        """Read a reply into a cache entry, and store it unless unreadable (asked again next time)."""
        choice, status, reason = parse_reply(reply, item.n_options)
        entry = {"choice": choice, "status": status, "reason": reason, "reply": reply, "judge": self.name,
                 "item": item.key, "text_sha256": _sha256(item.text), "via": via}
        if status != "unparsed":
            self.cache.put(key, entry)
        return entry

    def _verdict(self, item: JudgeItem, entry: Mapping[str, Any], cached: bool) -> Verdict:
        choice = entry["choice"]
        if item.category_names is not None and choice is not None:
            choice -= 1  # the prompt numbers categories from 1; verdicts index category_names
        detail = {"reply": entry["reply"], "status": entry["status"], "reason": entry.get("reason", ""),
                  "via": entry.get("via", ""), "cached": cached}
        return Verdict(choice, junk=entry["status"] in ("null", "junk"), judge=self.name, detail=detail)

    def _encoded(self, image: Image.Image, memo: dict[int, tuple[str, str]],
                 keep: int | None = None) -> tuple[str, str]:
        """The image as sent, encoded once per distinct image object (memo holds at most `keep`)."""
        if id(image) not in memo:
            if keep is not None and len(memo) >= keep:
                memo.clear()
            memo[id(image)] = encode_image(image, self.image_format, self.max_side)
        return memo[id(image)]

    # ------------------------------------------------------------------ batches

    def _batch_round(self, batchable: dict[str, JudgeItem], pending: dict[str, JudgeItem],
                     found: dict[str, tuple[dict, bool]], direct_only: set[str]) -> None:
        """Submit `batchable` as one or more batches (each recorded at once), then collect them."""
        submitted = []
        for chunk in self._chunks(batchable):
            batch_id = self._call(self._submit, chunk, doing="submitting a batch")
            self.ledger.submitted(batch_id, self.name, self.base_url, [key for key, _ in chunk])
            submitted.append(batch_id)
        for batch_id in submitted:
            self._collect(batch_id, pending, found, direct_only)

    def _chunks(self, items: Mapping[str, JudgeItem]) -> Iterator[list[tuple[str, dict]]]:
        """(custom id, request params) lists within the vendor's per-batch count and size limits."""
        limit = min(self.batch_size or self.max_batch_requests, self.max_batch_requests)
        chunk: list[tuple[str, dict]] = []
        size = 0
        memo: dict[int, tuple[str, str]] = {}
        for key, item in items.items():
            data, media_type = self._encoded(item.image, memo)
            prompt = judge_prompt(item)
            cost = len(data) + len(prompt) + 2048
            if chunk and (len(chunk) >= limit or size + cost > self.max_batch_bytes):
                yield chunk
                chunk, size = [], 0
                memo = {id(item.image): (data, media_type)}
            chunk.append((key, self._params(prompt, data, media_type)))
            size += cost
        if chunk:
            yield chunk

    def _collect(self, batch_id: str, pending: dict[str, JudgeItem], found: dict[str, tuple[dict, bool]],
                 direct_only: set[str]) -> None:
        """Wait for a batch to end and cache its answers as they are read; then mark it collected."""
        self._client()
        sdk = self._sdk
        resume = (f"Rerun the same command: it resumes batch {batch_id} (recorded in {self.ledger.path}) and pays "
                  "nothing twice." if self.ledger.path else
                  f"Give the judge a cache_dir so that a rerun can resume batch {batch_id}.")
        try:
            status = self._wait(batch_id, resume)
            if status.failure is not None:
                self.ledger.finished(batch_id, "failed")
                raise JudgeError(f"The vendor refused batch {batch_id} of the {self.name} judge: {status.failure}",
                                 "Fix what it names (model, request options), then rerun; use batch=never to send "
                                 "requests one at a time.")
            for result in self._results(batch_id):
                item = pending.get(result.key)
                if item is None:
                    continue
                if result.reply is not None:
                    found[result.key] = (self._record(result.key, pending.pop(result.key), result.reply,
                                                      via=f"batch:{batch_id}"), False)
                elif not result.retry_in_batch:
                    direct_only.add(result.key)
        except sdk.NotFoundError:
            self.ledger.finished(batch_id, "lost")  # the vendor no longer has it: its answers go out again
            return
        except JudgeError:
            raise
        except sdk.APIError as exc:
            raise self._error(exc, f"collecting batch {batch_id}", resume) from exc
        except Exception as exc:  # a results stream cut mid-way surfaces as the HTTP library's own error
            raise JudgeError(f"Reading the results of batch {batch_id} failed ({type(exc).__name__}: {exc}); the "
                             "verdicts read so far are cached.", resume) from exc
        self.ledger.finished(batch_id)

    def _wait(self, batch_id: str, resume: str) -> BatchStatus:
        started = time.monotonic()
        with progress_bar(desc=f"{self.name} batch {batch_id}", unit="verdict", disable=not self.progress) as bar:
            while True:
                status = self._poll(batch_id)  # the caller turns the client's errors into JudgeErrors
                bar.total, bar.n = status.total, status.done
                bar.refresh()
                if status.ended:
                    return status
                waited = time.monotonic() - started
                if self.batch_wait_s is not None and waited >= self.batch_wait_s:
                    raise JudgeError(f"Batch {batch_id} of the {self.name} judge is still {status.state} "
                                     f"({status.done} of {status.total} done) after {waited:.0f} s.", resume)
                self.sleep(self.poll_s)

    # ------------------------------------------------------------------ errors

    def _call(self, fn: Callable[..., Any], *args: Any, doing: str, fix: str | None = None) -> Any:
        """Run one client call; the client's errors (after its own retries) become JudgeErrors."""
        self._client()
        try:
            return fn(*args)
        except self._sdk.APIError as exc:  # type: ignore[union-attr]
            raise self._error(exc, doing, fix) from exc

    def _error(self, exc: Exception, doing: str, fix: str | None = None) -> JudgeError:
        status = getattr(exc, "status_code", None)
        message = str(getattr(exc, "message", "") or exc)[:500]
        cached = " Verdicts already received are cached." if self.cache.path else ""
        if status is None:
            return JudgeError(f"The {self.name} judge could not reach {self.base_url} while {doing} "
                              f"({type(exc).__name__}: {message}).",
                              fix or f"Check the endpoint and the network, then rerun.{cached}")
        if status in (401, 403):
            fix = f"Check the API key ({self.key_env} or api_key=...) and its access to {self.model!r}."
        elif status == 404:
            fix = fix or f"Check the model name {self.model!r} and the base URL {self.base_url!r}."
        elif status == 429 or status >= 500:
            fix = fix or (f"Wait and rerun.{cached} Raise max_retries (now {self.max_retries}), or use "
                          "batch=always where the vendor has batches (no rate limits there).")
        else:
            fix = fix or ("Check that the model accepts images and the options: temperature=none for models that "
                          "reject a temperature, a larger max_tokens, or a smaller max_side.")
        return JudgeError(f"The {self.name} judge's endpoint answered HTTP {status} while {doing}: {message}", fix)

    # ------------------------------------------------------------------ vendor specifics

    def _new_client(self, sdk: ModuleType) -> Any:
        """The vendor's client, pointed at `base_url`, with `timeout_s` and `max_retries`."""
        raise NotImplementedError

    def _params(self, prompt: str, image_b64: str, media_type: str) -> dict:
        """The keyword arguments of one request (also the body of one batch request)."""
        raise NotImplementedError

    def _send_one(self, params: dict) -> str:
        """Send one request; the reply's text."""
        raise NotImplementedError

    def _submit(self, requests: list[tuple[str, dict]]) -> str:
        """Create a batch of (custom id, params); its id."""
        raise NotImplementedError

    def _poll(self, batch_id: str) -> BatchStatus:
        raise NotImplementedError

    def _results(self, batch_id: str) -> Iterator[BatchResult]:
        """The answers of an ended batch, in any order."""
        raise NotImplementedError


__all__ = ["BatchResult", "BatchStatus", "LLMJudge", "image_digest"]
