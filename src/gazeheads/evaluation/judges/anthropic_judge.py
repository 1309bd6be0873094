"""Claude as the judge, through the `anthropic` client: the Messages API and Message Batches."""

from __future__ import annotations

from types import ModuleType
from typing import Any, Iterator

from .base import JudgeError
from .llm import BatchResult, BatchStatus, LLMJudge
from .spec import DEFAULT_MODELS


def _text(blocks: Any) -> str:
    return "".join(getattr(b, "text", "") for b in blocks or [] if getattr(b, "type", "") == "text")


class AnthropicJudge(LLMJudge):
    """Claude sees the image and the answer and picks the panel (or category) in JSON.

    Batches use Message Batches (half the price, no rate limits; most end within an hour,
    all within 24 h). Key: ANTHROPIC_API_KEY. See `LLMJudge` for the options.
    """

    provider = "anthropic"
    default_key_env = "ANTHROPIC_API_KEY"
    base_url_env = "ANTHROPIC_BASE_URL"
    default_base_url = "https://api.anthropic.com"
    max_batch_requests = 100_000
    max_batch_bytes = 200 * 2**20  # the API takes 256 MB per batch

    def __init__(self, model: str = DEFAULT_MODELS["anthropic"], **kwargs: Any) -> None:
        if kwargs.get("temperature") is not None:
            raise JudgeError("The Anthropic judge takes no temperature: the API version the anthropic client "
                             "sends (2026-10-21) refuses one on every model.", "Leave temperature out.")
        super().__init__(model, **kwargs)

    def _new_client(self, sdk: ModuleType) -> Any:
        return sdk.Anthropic(api_key=self._key() or "unused", base_url=self.base_url, timeout=self.timeout_s,
                             max_retries=self.max_retries)

    def _params(self, prompt: str, image_b64: str, media_type: str) -> dict:
        content = [
            {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": image_b64}},
            {"type": "text", "text": prompt},
        ]
        params: dict = {"model": self.model, "max_tokens": self.max_tokens,
                        "messages": [{"role": "user", "content": content}]}
        return params

    def _send_one(self, params: dict) -> str:
        return _text(self._client().messages.create(**params).content)

    def _submit(self, requests: list[tuple[str, dict]]) -> str:
        batch = self._client().messages.batches.create(
            requests=[{"custom_id": key, "params": params} for key, params in requests])
        return batch.id

    def _poll(self, batch_id: str) -> BatchStatus:
        batch = self._client().messages.batches.retrieve(batch_id)
        counts = batch.request_counts
        done = counts.succeeded + counts.errored + counts.canceled + counts.expired
        return BatchStatus(batch.processing_status == "ended", batch.processing_status, done, done + counts.processing)

    def _results(self, batch_id: str) -> Iterator[BatchResult]:
        for line in self._client().messages.batches.results(batch_id):
            result = line.result
            if result.type == "succeeded":
                yield BatchResult(line.custom_id, _text(result.message.content))
            elif result.type == "errored":
                error = getattr(getattr(result, "error", None), "error", None)
                yield BatchResult(line.custom_id, None, f"errored: {getattr(error, 'message', '')}")
            else:  # canceled or expired: never processed
                yield BatchResult(line.custom_id, None, result.type, retry_in_batch=True)
