"""The demo's web app: a FastAPI (ASGI) app serving one page and a small JSON + SSE API.

    app = create_app(gm, ranking)              # then: uvicorn.run(app, host="127.0.0.1")

Endpoints (all JSON unless said otherwise):

* ``GET  /``                                 the page (static HTML/JS/CSS under /static)
* ``GET  /api/info``                         model, heads, defaults and limits
* ``GET  /api/images``                       the pickable images (strips, comics, uploads)
* ``GET  /api/images/{id}``                  one image: size, token cells, tint regions, captions
* ``GET  /api/images/{id}/pixels``           the image as PNG
* ``POST /api/uploads``                      raw image bytes as the body (Content-Type image/*)
* ``POST /api/generate``                     starts a generation; answers a text/event-stream
* ``POST /api/generations/{id}/target``      moves the live target (next tokens)
* ``POST /api/generations/{id}/cancel``      stops a generation
* ``GET  /api/status``                       what runs and waits, and how recent ones ended

Safety: requests must name a loopback host (no DNS rebinding) unless the app is served
beyond loopback, which needs an access token that every request then carries (401
otherwise; see :mod:`gazeheads.demo.access`); POSTs must carry a JSON or image content type
(no cross-site simple requests), bodies are size-capped, bodies are validated by strict
pydantic models, ids are looked up in start-up indexes and never turned into paths, uploads
are decoded a few at a time and shrunk while decoding, one generation runs at a time with a
bounded queue (429 beyond), and a generation stops as soon as its client goes away. With an
audit log, every steering action (start and live re-target) appends a JSON line naming the
client (remote address and the page's session id).
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Sequence, Union

from fastapi import FastAPI, HTTPException, Path as PathParam, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.middleware.trustedhost import TrustedHostMiddleware

from .. import prompts
from ..audit import AuditLog, AuditSink
from ..errors import GazeheadsError
from ..model import GazeModel
from ..ranking import Ranking
from ..regions import Box, Panel
from ..specs import DEMO_STEER, MODES, NUMERICS, PHASES, HeadSpec
from . import is_loopback
from .access import TokenGate, check_token
from .library import Entry, Library, Limits, UploadError, comics_entries, synthetic_entries
from .session import (AuditFailed, GenerationQueue, GenerationSettings, LiveGeneration, QueueFull,
                      describe_geometry)
from .targets import Circle

STATIC = Path(__file__).parent / "static"
DEFAULT_SEEDS = tuple(range(100_000, 100_006))
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
JSON_BODY_LIMIT = 16 * 1024
IMAGE_ID = r"^(synth|comic|upload)-[A-Za-z0-9]{1,32}$"
GENERATION_ID = r"^[0-9a-f]{16}$"
KEEPALIVE_S = 2.0
SESSION_HEADER = "x-gazeheads-session"  # the page's random per-load id, for the audit log
SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


ImageId = Annotated[str, PathParam(pattern=IMAGE_ID)]
GenerationId = Annotated[str, PathParam(pattern=GENERATION_ID)]


# request bodies ---------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


Coord = Annotated[float, Field(ge=-100_000, le=100_000)]


class CircleTarget(_Strict):
    kind: Literal["circle"]
    x: Coord
    y: Coord
    r: Annotated[float, Field(gt=0, le=100_000)]


class BoxTarget(_Strict):
    kind: Literal["box"]
    x0: Coord
    y0: Coord
    x1: Coord
    y1: Coord


class PanelTarget(_Strict):
    kind: Literal["panel"]
    index: Annotated[int, Field(ge=1, le=64)]


TargetSpec = Annotated[Union[CircleTarget, BoxTarget, PanelTarget], Field(discriminator="kind")]


class GenerateRequest(_Strict):
    image_id: Annotated[str, Field(pattern=IMAGE_ID)]
    question: Annotated[str, Field(min_length=1, max_length=500)] | None = None
    steer: bool = True
    target: TargetSpec | None = None
    k: Annotated[int, Field(ge=1)] | None = None
    phase: Literal["decode", "prefill+decode", "last-prompt+decode"] = DEMO_STEER.phase
    mode: Literal["boost_suppress", "suppress_image", "suppress_all", "max_suppress_all"] = DEMO_STEER.mode
    strength: Annotated[float, Field(gt=0, le=1_000_000)] = DEMO_STEER.strength
    numerics: Literal["reference", "exact"] = DEMO_STEER.numerics
    max_new_tokens: Annotated[int, Field(ge=1)] | None = None
    token_delay_ms: Annotated[int, Field(ge=0, le=2000)] | None = None


class RetargetRequest(_Strict):
    target: TargetSpec


assert set(GenerateRequest.model_fields["phase"].annotation.__args__) == set(PHASES)  # type: ignore[union-attr]
assert set(GenerateRequest.model_fields["mode"].annotation.__args__) == set(MODES)  # type: ignore[union-attr]
assert set(GenerateRequest.model_fields["numerics"].annotation.__args__) == set(NUMERICS)  # type: ignore[union-attr]


def _region(spec: CircleTarget | BoxTarget | PanelTarget, entry_size: tuple[int, int]):
    """The target as a gazeheads region, checked against the image size (422 otherwise)."""
    width, height = entry_size
    if isinstance(spec, PanelTarget):
        return Panel(spec.index)
    if isinstance(spec, CircleTarget):
        if not (0 <= spec.x <= width and 0 <= spec.y <= height):
            raise HTTPException(422, f"The spotlight centre ({spec.x:g}, {spec.y:g}) is outside the "
                                     f"{width}x{height} px image.")
        return Circle(spec.x, spec.y, spec.r)
    if not (spec.x1 > spec.x0 and spec.y1 > spec.y0):
        raise HTTPException(422, "The box has no area: give x0 < x1 and y0 < y1.")
    if spec.x1 <= 0 or spec.y1 <= 0 or spec.x0 >= width or spec.y0 >= height:
        raise HTTPException(422, f"The box lies outside the {width}x{height} px image.")
    return Box(spec.x0, spec.y0, spec.x1, spec.y1)


# middleware ---------------------------------------------------------------------------------


class _Guard:
    """Caps request bodies and requires non-simple content types on POST (no cross-site requests)."""

    def __init__(self, app, json_limit: int, upload_limit: int) -> None:
        self.app = app
        self.json_limit = json_limit
        self.upload_limit = upload_limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        upload = scope["path"] == "/api/uploads"
        limit = self.upload_limit if upload else self.json_limit
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        if scope["method"] == "POST":
            ctype = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
            if upload:
                allowed = ctype.startswith("image/") or ctype == "application/octet-stream"
            else:
                allowed = ctype == "application/json"
            if not allowed:
                want = "an image type (e.g. image/png)" if upload else "application/json"
                return await JSONResponse({"detail": f"Content-Type must be {want}, not {ctype or 'missing'}."},
                                          status_code=415)(scope, receive, send)
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > limit
            except ValueError:
                return await JSONResponse({"detail": "Bad Content-Length."}, status_code=400)(scope, receive, send)
            if too_big:
                return await JSONResponse({"detail": f"The request body is over the limit of {limit} bytes."},
                                          status_code=413)(scope, receive, send)
        received = 0

        async def capped_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"The request body is over the limit of {limit} bytes.")
            return message

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
                if not scope["path"].startswith("/static") and scope["path"] != "/":
                    extra.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers + [(k, v) for k, v in extra if k not in present]}
            await send(message)

        await self.app(scope, capped_receive, send_with_headers)


class _EventStream(StreamingResponse):
    """An SSE response that cancels its generation however the response ends (done, error, client gone)."""

    def __init__(self, content, generation: LiveGeneration) -> None:
        super().__init__(content, media_type="text/event-stream",
                         headers={"cache-control": "no-store", "x-accel-buffering": "no"})
        self.generation = generation

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.generation.cancel.set()


def _sse(event: dict) -> str:
    return f"data: {json.dumps(event, separators=(',', ':'))}\n\n"


# the app ---------------------------------------------------------------------------------


@dataclass
class DemoState:
    gm: GazeModel
    ranking: Ranking
    library: Library
    queue: GenerationQueue
    question: str
    default_k: int
    max_new_tokens: int
    default_new_tokens: int
    token_delay_ms: int
    presets: list[str]
    audit: AuditSink | None = None
    _meta: dict = field(default_factory=dict)
    _pixels: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def entry(self, image_id: str) -> Entry:
        entry = self.library.get(image_id)
        if entry is None:
            raise HTTPException(404, f"No image {image_id!r}; GET /api/images lists them.")
        return entry

    def _cached(self, store: dict, key: str, compute):
        """`store[key]`, computed outside the lock on a miss; the 64 most recent entries are kept."""
        with self._lock:
            if key in store:
                return store[key]
        value = compute()
        with self._lock:
            store[key] = value
            while len(store) > 64:
                store.pop(next(iter(store)))
        return value

    def forget(self, image_id: str) -> None:
        """Drop what was computed for an image that left the library (an old upload)."""
        with self._lock:
            self._meta.pop(image_id, None)
            self._pixels.pop(image_id, None)

    def meta(self, entry: Entry) -> dict:
        """Size, token cells and tint regions of an image (computed once: the processor runs, not the model)."""

        def compute() -> dict:
            image = self.library.image(entry)
            try:
                geometry = self.gm.encode(image, self.question).geometries[0]
            except GazeheadsError as exc:
                raise HTTPException(422, f"{exc.problem} {exc.fix or ''}".strip()) from None
            return {"id": entry.id, "name": entry.name, "source": entry.source,
                    "captions": entry.captions or getattr(image, "captions", None), **describe_geometry(geometry)}

        return self._cached(self._meta, entry.id, compute)

    def pixels(self, entry: Entry) -> bytes:
        def compute() -> bytes:
            image = self.library.image(entry)
            pil = image.image if hasattr(image, "image") else image
            buffer = io.BytesIO()
            pil.save(buffer, format="PNG")
            return buffer.getvalue()

        return self._cached(self._pixels, entry.id, compute)


def create_app(
    gm: GazeModel,
    ranking: Ranking,
    *,
    comics: Sequence | None = None,
    question: str | None = None,
    synthetic_seeds: Sequence[int] = DEFAULT_SEEDS,
    queue_size: int = 2,
    max_new_tokens: int = 64,
    default_new_tokens: int = 24,
    token_delay_ms: int = 0,
    k: int | None = None,
    limits: Limits | None = None,
    allowed_hosts: Sequence[str] | None = None,
    token: str | None = None,
    audit_log: AuditSink | str | Path | None = None,
    ranking_file: str | None = None,
) -> FastAPI:
    """The demo app for `gm` steered with `ranking`'s gaze heads.

    Strips: synthetic strips for `synthetic_seeds` and, with `comics` (a StripSet from
    `gazeheads.data.resolve_comics`), those strips, all in the model's layout (`gm.layout`).
    `allowed_hosts` defaults to loopback names; any other host name (or "*") needs `token`,
    which every request must then carry. `audit_log` (a path, appended to, or an AuditSink)
    receives one JSON line per steering action; `ranking_file` is shown as the ranking's origin.
    """
    hosts = list(allowed_hosts) if allowed_hosts is not None else list(LOOPBACK_HOSTS)
    if token is not None:
        check_token(token)
    elif any(not is_loopback(host) for host in hosts):
        raise GazeheadsError(f"Serving the demo to hosts {hosts} needs an access token.",
                             "Pass token=... (gazeheads demo --token), or keep the default loopback hosts.")
    ranking.check_compatible(gm)
    total = gm.shape.total
    default_heads = HeadSpec(k=k).resolve_k(total)
    entries = synthetic_entries(synthetic_seeds, gm.layout.strip)
    if comics is not None:
        entries += comics_entries(comics)
    limits = limits or Limits()
    question = question or gm.layout.narration_question
    presets = list(dict.fromkeys([question, prompts.NARRATION_QUESTION, prompts.VQA_QUESTION,
                                  prompts.SCENE_QUESTION]))
    sink = AuditLog(audit_log) if isinstance(audit_log, (str, Path)) else audit_log
    state = DemoState(gm=gm, ranking=ranking, library=Library(entries, limits), queue=GenerationQueue(queue_size),
                      question=question, default_k=default_heads,
                      max_new_tokens=max_new_tokens, default_new_tokens=min(default_new_tokens, max_new_tokens),
                      token_delay_ms=token_delay_ms, presets=presets, audit=sink)
    state.library.on_drop = state.forget

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        yield
        state.queue.cancel_all()
        state.library.close()

    app = FastAPI(title="gazeheads demo", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json",
                  lifespan=lifespan)
    app.state.demo = state

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
                          for e in errors)
        return JSONResponse({"detail": errors, "message": f"The request was not accepted ({where})."},
                            status_code=422)

    @app.exception_handler(GazeheadsError)
    async def _gazeheads_error(request: Request, exc: GazeheadsError):
        return JSONResponse({"detail": exc.problem, "fix": exc.fix}, status_code=422)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={
            "content-security-policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
                                       "script-src 'self'; connect-src 'self'; object-src 'none'; "
                                       "base-uri 'none'; frame-ancestors 'none'"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/info")
    def info() -> dict:
        shape = gm.shape
        return {
            "model": gm.name, "n_layers": shape.n_layers, "n_heads": shape.n_heads, "total_heads": total,
            "default_k": state.default_k, "ranking": {"source": ranking.source, "n_strips": ranking.n_strips,
                                                      "model_id": ranking.model_id, "file": ranking_file},
            "token_required": token is not None, "audit": sink is not None,
            "question": question, "presets": presets, "phases": list(PHASES), "default_phase": DEMO_STEER.phase,
            "modes": list(MODES), "max_new_tokens": max_new_tokens, "default_new_tokens": state.default_new_tokens,
            "token_delay_ms": token_delay_ms, "max_token_delay_ms": 2000, "queue_size": queue_size,
            "limits": {"max_upload_bytes": limits.max_upload_bytes, "max_pixels": limits.max_pixels,
                       "max_side": limits.max_side},
        }

    @app.get("/api/images")
    def images() -> dict:
        return {"images": [{"id": e.id, "name": e.name, "source": e.source} for e in state.library.entries()]}

    @app.get("/api/images/{image_id}")
    def image_meta(image_id: ImageId) -> dict:
        return state.meta(state.entry(image_id))

    @app.get("/api/images/{image_id}/pixels")
    def image_pixels(image_id: ImageId) -> Response:
        return Response(state.pixels(state.entry(image_id)), media_type="image/png")

    @app.post("/api/uploads", status_code=201)
    async def upload(request: Request) -> dict:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_upload_bytes:
                raise HTTPException(413, f"The upload is over the limit of {limits.max_upload_bytes} bytes.")
            chunks.append(chunk)
        name = request.headers.get("x-filename", "upload")
        name = "".join(c for c in name if c.isprintable())[:80] or "upload"
        data = b"".join(chunks)
        del chunks

        def decode_and_describe() -> dict:  # the processor's pass too runs on the decoding threads
            return state.meta(state.library.add_upload(data, name))

        try:
            return await asyncio.wrap_future(state.library.decoding(decode_and_describe))
        except UploadError as exc:
            headers = {"retry-after": "1"} if exc.status == 429 else None
            return JSONResponse({"detail": exc.problem, "fix": exc.fix}, status_code=exc.status, headers=headers)

    def client_of(request: Request) -> str:
        host = request.client.host if request.client is not None else "unknown"
        session = request.headers.get(SESSION_HEADER, "")
        return f"{host} page {session}" if SESSION_ID.match(session) else host

    @app.post("/api/generate", responses={200: {"content": {"text/event-stream": {}}}, 429: {}})
    async def generate(body: GenerateRequest, request: Request):
        entry = state.entry(body.image_id)
        meta = await run_in_threadpool(state.meta, entry)
        k = body.k or state.default_k
        if k > total:
            raise HTTPException(422, f"K={k} heads asked of a model with {total} heads.")
        n_new = body.max_new_tokens or state.default_new_tokens
        if n_new > max_new_tokens:
            raise HTTPException(422, f"max_new_tokens={n_new} is over this server's limit of {max_new_tokens}.")
        target = None
        if body.steer:
            if body.target is None:
                raise HTTPException(422, "A steered generation needs a target (circle, box or panel).")
            if isinstance(body.target, PanelTarget) and body.target.index > meta["panels"]:
                raise HTTPException(422, f"Panel {body.target.index} asked of an image with {meta['panels']} panels.")
            target = _region(body.target, (meta["width"], meta["height"]))
        settings = GenerationSettings(
            question=body.question or question, heads=ranking.top(k), steer=body.steer, target=target,
            spec=DEMO_STEER.replace(phase=body.phase, mode=body.mode, strength=body.strength, numerics=body.numerics),
            max_new_tokens=n_new,
            token_delay=(token_delay_ms if body.token_delay_ms is None else body.token_delay_ms) / 1000,
            audit_sink=state.audit, client=client_of(request), image_id=entry.id)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def emit(event: dict) -> None:
            try:
                loop.call_soon_threadsafe(events.put_nowait, event)
            except RuntimeError:  # the server's loop is gone (shutdown)
                pass

        image = state.library.image(entry)
        generation = LiveGeneration(gm, image, settings, emit)
        try:
            ahead = state.queue.submit(generation)
        except QueueFull as exc:
            return JSONResponse({"detail": exc.problem, "fix": exc.fix}, status_code=429,
                                headers={"retry-after": "1"})

        async def stream():
            yield _sse({"type": "queued", "generation_id": generation.id, "ahead": ahead,
                        "steer": body.steer, "k": k})
            while True:
                try:
                    event = await asyncio.wait_for(events.get(), KEEPALIVE_S)
                except asyncio.TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if event["type"] == "end":
                    return
                yield _sse(event)

        return _EventStream(stream(), generation)

    def _live(generation_id: str) -> LiveGeneration:
        generation = state.queue.live.get(generation_id)
        if generation is None:
            raise HTTPException(404, f"No running generation {generation_id!r} (it may have finished).")
        return generation

    @app.post("/api/generations/{generation_id}/target")
    def retarget(generation_id: GenerationId, body: RetargetRequest) -> dict:
        generation = _live(generation_id)
        if not generation.settings.steer:
            raise HTTPException(409, "This generation runs without steering; it has no target to move.")
        image = generation.image
        size = image.image.size if hasattr(image, "image") else image.size
        if isinstance(body.target, PanelTarget):
            panels = len(image.panel_boxes) if hasattr(image, "panel_boxes") else 0
            if body.target.index > panels:
                raise HTTPException(422, f"Panel {body.target.index} asked of an image with {panels} panels.")
        try:
            return generation.retarget(_region(body.target, size))
        except AuditFailed as exc:
            raise HTTPException(503, f"{exc.problem} {exc.fix}") from None

    @app.post("/api/generations/{generation_id}/cancel", status_code=202)
    def cancel(generation_id: GenerationId) -> dict:
        generation = _live(generation_id)
        generation.cancel.set()
        return {"cancelled": generation.id}

    @app.get("/api/status")
    def status() -> dict:
        return state.queue.status()

    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)
    app.add_middleware(_Guard, json_limit=JSON_BODY_LIMIT, upload_limit=limits.max_upload_bytes)
    if token is not None:
        app.add_middleware(TokenGate, token=token)  # outermost: without the token, nothing else answers
    return app
