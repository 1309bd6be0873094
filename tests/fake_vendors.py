"""A local fake of the Anthropic and OpenAI HTTP APIs, enough for their official Python clients.

It speaks, on 127.0.0.1 only:
    Anthropic  POST /v1/messages; Message Batches: POST /v1/messages/batches,
               GET /v1/messages/batches/{id}, GET /v1/messages/batches/{id}/results (JSONL)
    OpenAI     POST /v1/chat/completions; POST /v1/files (multipart), GET /v1/files/{id}/content;
               POST /v1/batches, GET /v1/batches/{id}

Its state (`FakeVendor`) outlives the server, so a test can kill the server mid-batch and
start a new one on the same port. It answers like a judge would: the panel whose caption the
answer names (`CAPTIONS`), or the category named, else junk. Faults: `fail(...)` answers the
next matching requests with an error status (429 with retry-after, 5xx, 401), `cut_results_after`
drops the connection part-way through a batch's results, `outcome` makes batch requests
errored or expired.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator

import pytest

CAPTIONS = ["red circle", "blue star", "green square", "yellow triangle", "purple cross", "orange ring"]


def judge_like(prompt: str) -> str:
    """What a careful judge would reply to the package's prompt, in its JSON format."""
    quoted = re.findall(r'"""(.*?)"""', prompt, re.DOTALL)
    answer = quoted[0].lower() if quoted else ""
    options = re.findall(r"^(\d+)\. (.+)$", prompt, re.MULTILINE)
    if options:
        named = [int(i) for i, name in options if name.lower() in answer]
        return json.dumps({"category": named[0] if named else None, "junk": not named, "reason": "fake"})
    named = [k for k, caption in enumerate(CAPTIONS, start=1) if caption in answer]
    return json.dumps({"panel": named[0] if named else None, "junk": not named, "reason": "fake"})


@dataclass
class Seen:
    method: str
    path: str
    headers: dict
    body: object


@dataclass
class Fault:
    method: str
    path: str  # exact path
    status: int
    headers: dict
    times: int


@dataclass
class FakeVendor:
    """Everything the fake server knows; shared by the servers started on it."""

    answer: Callable[[str], str] = judge_like
    polls_to_end: int = 1  # retrieves of a batch before it has ended
    outcome: Callable[[int], str] = lambda index: "succeeded"  # per batch request: succeeded, errored, expired
    cut_results_after: int | None = None  # drop the connection after this many result lines (once)
    requests: list[Seen] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    batches: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, method: str, path: str, status: int, headers: dict | None = None, times: int = 1) -> None:
        self.faults.append(Fault(method, path, status, headers or {}, times))

    def seen(self, method: str, path: str) -> list[Seen]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def count(self, method: str, prefix: str) -> int:
        return sum(r.method == method and r.path.startswith(prefix) for r in self.requests)


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, state: FakeVendor, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.state = state
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        self.shutdown()
        self.server_close()


def _prompt_of(params: dict) -> str:
    content = params["messages"][0]["content"]
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def _anthropic_message(params: dict, text: str) -> dict:
    return {"id": "msg_fake", "type": "message", "role": "assistant", "model": params["model"],
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 5}}


def _openai_completion(params: dict, text: str) -> dict:
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": params["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}


_STAMP = "2026-01-01T00:00:00Z"


class _Handler(BaseHTTPRequestHandler):
    server: FakeServer

    def log_message(self, *args):
        pass

    # -------------------------------------------------------------- plumbing

    def _body(self) -> object:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        kind = self.headers.get("Content-Type", "")
        if kind.startswith("multipart/form-data"):
            message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {kind}\r\n\r\n".encode() + raw)
            return {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
                    for part in message.iter_parts()}
        return json.loads(raw) if raw else None

    def _send(self, status: int, payload: object, headers: dict | None = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if raw is None else "application/binary")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        state = self.server.state
        body = self._body() if method == "POST" else None
        path = self.path.split("?")[0]
        with state.lock:
            state.requests.append(Seen(method, path, {k.lower(): v for k, v in self.headers.items()}, body))
            fault = next((f for f in state.faults if f.method == method and f.path == path and f.times > 0), None)
            if fault is not None:
                fault.times -= 1
        if fault is not None:
            error = {"type": "error", "error": {"type": "rate_limit_error" if fault.status == 429 else "api_error",
                                                "message": f"fake HTTP {fault.status}"},
                     "message": f"fake HTTP {fault.status}"}
            return self._send(fault.status, error, fault.headers)
        for pattern, route in self.ROUTES[method]:
            match = re.fullmatch(pattern, path)
            if match:
                return route(self, body, *match.groups())
        self._send(404, {"error": {"message": f"no route {method} {path}"}})

    def do_POST(self):  # noqa: N802
        self._handle("POST")

    def do_GET(self):  # noqa: N802
        self._handle("GET")

    # -------------------------------------------------------------- Anthropic

    def anthropic_message(self, params):
        self._send(200, _anthropic_message(params, self.server.state.answer(_prompt_of(params))))

    def anthropic_batch_create(self, body):
        state = self.server.state
        with state.lock:
            batch_id = f"msgbatch_{len(state.batches) + 1:04d}"
            state.batches[batch_id] = {"vendor": "anthropic", "requests": body["requests"], "polls": 0}
        self._send(200, self._anthropic_batch(batch_id))

    def _anthropic_batch(self, batch_id: str) -> dict:
        batch = self.server.state.batches[batch_id]
        ended = batch["polls"] >= self.server.state.polls_to_end
        n = len(batch["requests"])
        outcomes = [self.server.state.outcome(i) for i in range(n)] if ended else []
        counts = {"processing": 0 if ended else n, "succeeded": outcomes.count("succeeded"),
                  "errored": outcomes.count("errored"), "canceled": 0, "expired": outcomes.count("expired")}
        return {"id": batch_id, "type": "message_batch", "processing_status": "ended" if ended else "in_progress",
                "request_counts": counts, "created_at": _STAMP, "expires_at": _STAMP,
                "ended_at": _STAMP if ended else None, "archived_at": None, "cancel_initiated_at": None,
                "results_url": f"{self.server.url}/v1/messages/batches/{batch_id}/results" if ended else None}

    def anthropic_batch_retrieve(self, _body, batch_id):
        state = self.server.state
        if batch_id not in state.batches:
            return self._send(404, {"type": "error", "error": {"type": "not_found_error", "message": "no batch"}})
        with state.lock:
            state.batches[batch_id]["polls"] += 1
        self._send(200, self._anthropic_batch(batch_id))

    def anthropic_batch_results(self, _body, batch_id):
        state = self.server.state
        lines = []
        for i, request in enumerate(state.batches[batch_id]["requests"]):
            kind = state.outcome(i)
            if kind == "succeeded":
                text = state.answer(_prompt_of(request["params"]))
                result = {"type": "succeeded", "message": _anthropic_message(request["params"], text)}
            elif kind == "errored":
                result = {"type": "errored", "error": {"type": "error", "error": {
                    "type": "invalid_request_error", "message": "fake per-request error"}}}
            else:
                result = {"type": kind}
            lines.append(json.dumps({"custom_id": request["custom_id"], "result": result}) + "\n")
        self._send_lines(lines)

    def _send_lines(self, lines: list[str]) -> None:
        state = self.server.state
        data = "".join(lines).encode()
        if state.cut_results_after is None:
            return self._send(200, None, raw=data)
        partial = "".join(lines[: state.cut_results_after]).encode()
        state.cut_results_after = None
        self.send_response(200)
        self.send_header("Content-Type", "application/binary")
        self.send_header("Content-Length", str(len(data)))  # promise everything, send part, hang up
        self.end_headers()
        self.wfile.write(partial)
        self.wfile.flush()
        self.close_connection = True

    # -------------------------------------------------------------- OpenAI

    def openai_completion(self, params):
        self._send(200, _openai_completion(params, self.server.state.answer(_prompt_of(params))))

    def openai_file_create(self, form):
        state = self.server.state
        with state.lock:
            file_id = f"file-{len(state.files) + 1:04d}"
            state.files[file_id] = form["file"]
        self._send(200, {"id": file_id, "object": "file", "bytes": len(form["file"]), "created_at": 0,
                         "filename": "batch.jsonl", "purpose": form.get("purpose", b"").decode(),
                         "status": "processed"})

    def openai_file_content(self, _body, file_id):
        lines = self.server.state.files[file_id].decode().splitlines(keepends=True)
        self._send_lines(lines)

    def openai_batch_create(self, body):
        state = self.server.state
        requests = [json.loads(line) for line in state.files[body["input_file_id"]].decode().splitlines() if line]
        with state.lock:
            batch_id = f"batch_{len(state.batches) + 1:04d}"
            state.batches[batch_id] = {"vendor": "openai", "requests": requests, "polls": 0, "body": body}
        self._send(200, self._openai_batch(batch_id))

    def _openai_batch(self, batch_id: str) -> dict:
        state = self.server.state
        batch = state.batches[batch_id]
        ended = batch["polls"] >= state.polls_to_end
        n = len(batch["requests"])
        output = errors = None
        if ended and "output" not in batch:
            done, failed = [], []
            for i, request in enumerate(batch["requests"]):
                kind = state.outcome(i)
                if kind == "succeeded":
                    body = _openai_completion(request["body"], state.answer(_prompt_of(request["body"])))
                    done.append({"id": f"req_{i}", "custom_id": request["custom_id"],
                                 "response": {"status_code": 200, "request_id": f"r{i}", "body": body}, "error": None})
                elif kind == "errored":
                    failed.append({"id": f"req_{i}", "custom_id": request["custom_id"],
                                   "response": {"status_code": 400, "request_id": f"r{i}",
                                                "body": {"error": {"message": "fake per-request error"}}},
                                   "error": None})
            with state.lock:
                for rows, slot in ((done, "output"), (failed, "errors")):
                    if rows:
                        file_id = f"file-{len(state.files) + 1:04d}"
                        state.files[file_id] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                        batch[slot] = file_id
                    else:
                        batch[slot] = None
        if ended:
            output, errors = batch["output"], batch["errors"]
        completed = sum(state.outcome(i) == "succeeded" for i in range(n)) if ended else 0
        failed = sum(state.outcome(i) == "errored" for i in range(n)) if ended else 0
        expired = ended and any(state.outcome(i) == "expired" for i in range(n))
        status = ("expired" if expired else "completed") if ended else "in_progress"
        return {"id": batch_id, "object": "batch", "endpoint": "/v1/chat/completions", "errors": None,
                "input_file_id": batch.get("body", {}).get("input_file_id", ""), "completion_window": "24h",
                "status": status, "output_file_id": output, "error_file_id": errors, "created_at": 0,
                "request_counts": {"total": n, "completed": completed, "failed": failed},
                "metadata": batch.get("body", {}).get("metadata")}

    def openai_batch_retrieve(self, _body, batch_id):
        state = self.server.state
        if batch_id not in state.batches:
            return self._send(404, {"error": {"message": "no batch", "type": "invalid_request_error"}})
        with state.lock:
            state.batches[batch_id]["polls"] += 1
        self._send(200, self._openai_batch(batch_id))

    ROUTES = {
        "POST": [
            (r"/v1/messages", anthropic_message),
            (r"/v1/messages/batches", anthropic_batch_create),
            (r"/v1/chat/completions", openai_completion),
            (r"/v1/files", openai_file_create),
            (r"/v1/batches", openai_batch_create),
        ],
        "GET": [
            (r"/v1/messages/batches/([\w-]+)", anthropic_batch_retrieve),
            (r"/v1/messages/batches/([\w-]+)/results", anthropic_batch_results),
            (r"/v1/files/([\w-]+)/content", openai_file_content),
            (r"/v1/batches/([\w-]+)", openai_batch_retrieve),
        ],
    }


class Fake:
    """A running fake server and its state; `restart()` brings a killed server back on the same port."""

    def __init__(self) -> None:
        self.state = FakeVendor()
        self.server = FakeServer(self.state)
        self.alive = True

    @property
    def url(self) -> str:
        return self.server.url

    def kill(self) -> None:
        if self.alive:
            self.server.kill()
            self.alive = False

    def restart(self) -> None:
        self.kill()
        self.server = FakeServer(self.state, port=self.server.port)
        self.alive = True


VENDOR_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "ANTHROPIC_PROFILE",
              "OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID")


def serve_fake(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[Fake]:
    """For a fixture: a fake vendor server on 127.0.0.1; no vendor settings from the environment, and
    a connection to any other address fails."""
    for name in VENDOR_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANTHROPIC_CONFIG_DIR", str(tmp_path / "no-anthropic-profiles"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    connect = socket.socket.connect

    def loopback_only(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(f"the judge tests reach no network (tried {address[0]})")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)
    lookup = socket.getaddrinfo

    def loopback_lookup(host, *args, **kwargs):
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise socket.gaierror(f"the judge tests resolve no names (asked for {host})")
        return lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_lookup)
    server = Fake()
    yield server
    server.kill()
