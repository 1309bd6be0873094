"""OpenAI, or any OpenAI-compatible server, as the judge, through the `openai` client.

One request at a time uses Chat Completions, which vLLM, llama.cpp, Ollama and most
hosted services speak too. Batches use OpenAI's Files and Batch API, which most compatible
servers lack: `batch=auto` uses them only on api.openai.com; `batch=always` tries any endpoint.
"""

from __future__ import annotations

import io
import json
from types import ModuleType
from typing import Any, Iterator
from urllib.parse import urlsplit

from .llm import BatchResult, BatchStatus, LLMJudge

_ENDED = ("completed", "failed", "expired", "cancelled")
OPENAI_HOST = "api.openai.com"


def _message_text(completion: Any) -> str:
    """The first choice's text from a chat completion (an SDK object or its JSON)."""
    choices = completion.get("choices") if isinstance(completion, dict) else getattr(completion, "choices", None)
    if not choices:
        return ""
    message = choices[0].get("message") if isinstance(choices[0], dict) else getattr(choices[0], "message", None)
    content = message.get("content") if isinstance(message, dict) else getattr(message, "content", None)
    if isinstance(content, list):  # content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


class OpenAIJudge(LLMJudge):
    """A chat model sees the image (a data URL) and the answer and picks the panel in JSON.

    `base_url` includes the API root, e.g. http://localhost:8000/v1 (default
    https://api.openai.com/v1, or OPENAI_BASE_URL). Key: OPENAI_API_KEY; for a local
    server without authentication write require_key=false. See `LLMJudge` for the options.
    """

    provider = "openai"
    default_key_env = "OPENAI_API_KEY"
    base_url_env = "OPENAI_BASE_URL"
    default_base_url = "https://api.openai.com/v1"
    max_batch_requests = 50_000
    max_batch_bytes = 180 * 2**20  # the Batch API takes input files up to 200 MB

    def __init__(self, model: str, *, temperature: float | str | None = "auto", **kwargs: Any) -> None:
        """`temperature="auto"`: 0 on OpenAI-compatible servers (reproducible verdicts), not sent to
        api.openai.com, whose newer models refuse any but their default."""
        super().__init__(model, **kwargs)
        self.temperature = (None if self.official else 0.0) if temperature == "auto" else temperature  # type: ignore

    @property
    def official(self) -> bool:
        return urlsplit(self.base_url).hostname == OPENAI_HOST

    @property
    def batch_supported(self) -> bool:
        return self.official

    def _new_client(self, sdk: ModuleType) -> Any:
        return sdk.OpenAI(api_key=self._key() or "unused", base_url=self.base_url, timeout=self.timeout_s,
                          max_retries=self.max_retries)

    def _params(self, prompt: str, image_b64: str, media_type: str) -> dict:
        content = [
            {"type": "text", "text": prompt},
            {"type": "image_url", "image_url": {"url": f"data:{media_type};base64,{image_b64}"}},
        ]
        # OpenAI's newer models take max_completion_tokens only; compatible servers know max_tokens
        limit = "max_completion_tokens" if self.official else "max_tokens"
        params: dict = {"model": self.model, limit: self.max_tokens, "messages": [{"role": "user", "content": content}]}
        if self.temperature is not None:
            params["temperature"] = self.temperature
        return params

    def _send_one(self, params: dict) -> str:
        return _message_text(self._client().chat.completions.create(**params))

    def _submit(self, requests: list[tuple[str, dict]]) -> str:
        lines = [json.dumps({"custom_id": key, "method": "POST", "url": "/v1/chat/completions", "body": params})
                 for key, params in requests]
        data = ("\n".join(lines) + "\n").encode("utf-8")
        client = self._client()
        upload = client.files.create(file=("gazeheads-judge-batch.jsonl", io.BytesIO(data), "application/jsonl"),
                                     purpose="batch")
        batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                      completion_window="24h", metadata={"gazeheads_judge": self.name})
        return batch.id

    def _poll(self, batch_id: str) -> BatchStatus:
        batch = self._client().batches.retrieve(batch_id)
        counts = batch.request_counts
        done = (counts.completed + counts.failed) if counts else 0
        failure = None
        if batch.status == "failed":
            errors = getattr(batch.errors, "data", None) or []
            failure = "; ".join(f"{getattr(e, 'code', '')}: {getattr(e, 'message', '')}" for e in errors) or "failed"
        return BatchStatus(batch.status in _ENDED, batch.status, done, counts.total if counts else 0, failure)

    def _results(self, batch_id: str) -> Iterator[BatchResult]:
        client = self._client()
        batch = client.batches.retrieve(batch_id)
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            for line in client.files.content(file_id).text.splitlines():
                if not line.strip():
                    continue
                row = json.loads(line)
                response = row.get("response") or {}
                if response.get("status_code") == 200 and not row.get("error"):
                    yield BatchResult(row["custom_id"], _message_text(response.get("body") or {}))
                else:
                    error = row.get("error") or (response.get("body") or {}).get("error") or {}
                    message = error.get("message", "") if isinstance(error, dict) else str(error)
                    code = response.get("status_code")
                    # an expired or cancelled batch leaves unprocessed requests out of both files
                    yield BatchResult(row["custom_id"], None, f"HTTP {code}: {message}",
                                      retry_in_batch=code in (None, 429) or (code or 0) >= 500)
