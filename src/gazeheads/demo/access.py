"""Who may use the demo: this machine freely; anyone else only with the access token.

The demo binds loopback by default and then needs no token. Any other address needs one
(`gazeheads demo --host 0.0.0.0` makes one with `secrets` and prints the link that carries
it). With a token, every request must present it, else 401:

* API calls (``/api/...``): the header ``Authorization: Bearer <token>`` only, so no other
  site can make a visitor's browser send it (no cookie is accepted there);
* the page (``/``): the link's ``?token=<token>``; the answer sets an HttpOnly, SameSite=Strict
  cookie so that the page's own files (``/static/...``) and a reload of the page load too.

Tokens are compared in constant time (`hmac.compare_digest`).
"""

from __future__ import annotations

import hmac
import re
import secrets
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs

from ..errors import GazeheadsError

COOKIE = "gazeheads_demo_token"
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9._~-]{16,256}$")


def new_token() -> str:
    """A fresh random access token (32 URL-safe characters, 192 bits)."""
    return secrets.token_urlsafe(24)


def check_token(token: str) -> str:
    """The token if it is usable (16 to 256 URL-safe characters), else a GazeheadsError."""
    if not isinstance(token, str) or not TOKEN_PATTERN.match(token):
        raise GazeheadsError("The access token must be 16 to 256 characters from A-Z, a-z, 0-9 and . _ ~ -.",
                             "Leave --token out to have one generated, or use e.g. "
                             "`python -c 'import secrets; print(secrets.token_urlsafe(24))'`.")
    return token


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve a non-loopback address without an access token."""
    from . import is_loopback

    if not is_loopback(host) and not token:
        raise GazeheadsError(f"Serving the demo on {host} would let other machines steer the model without "
                             "any access control.",
                             "Give an access token (gazeheads demo --token TOKEN, or leave --token out and one is "
                             "generated and printed), or serve on 127.0.0.1.")


class TokenGate:
    """ASGI middleware: every HTTP request must carry the token (see the module docstring), else 401."""

    def __init__(self, app, token: str) -> None:
        self.app = app
        self.token = check_token(token).encode("ascii")

    def _matches(self, presented: bytes | str | None) -> bool:
        if presented is None:
            return False
        if isinstance(presented, str):
            presented = presented.encode("utf-8", "surrogateescape")
        return hmac.compare_digest(presented, self.token)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        authorization = headers.get(b"authorization", b"")
        scheme, _, credentials = authorization.partition(b" ")
        granted = scheme.lower() == b"bearer" and self._matches(credentials.strip())
        from_link = False
        if not granted and (path == "/" or path.startswith("/static/")):
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            from_link = any(self._matches(value) for value in query.get("token", []))
            granted = from_link or self._matches(_cookie(headers.get(b"cookie")))
        if not granted:
            return await _refuse(path, scope, receive, send)
        if not from_link:
            return await self.app(scope, receive, send)
        cookie = (f"{COOKIE}={self.token.decode()}; Path=/; HttpOnly; SameSite=Strict").encode("latin-1")

        async def send_with_cookie(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": list(message.get("headers", [])) + [(b"set-cookie", cookie)]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def _cookie(raw: bytes | None) -> str | None:
    if not raw:
        return None
    jar = SimpleCookie()
    try:
        jar.load(raw.decode("latin-1"))
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else None


async def _refuse(path: str, scope, receive, send) -> None:
    from starlette.responses import JSONResponse, PlainTextResponse

    headers = {"www-authenticate": 'Bearer realm="gazeheads demo"', "cache-control": "no-store",
               "x-content-type-options": "nosniff"}
    if path.startswith("/api/"):
        response = JSONResponse({"detail": "This demo needs its access token.",
                                 "fix": "Send the header 'Authorization: Bearer <token>' with the token "
                                        "`gazeheads demo` printed."}, status_code=401, headers=headers)
    else:
        response = PlainTextResponse("This demo needs its access token: open the full link that `gazeheads demo` "
                                     "printed (it ends in ?token=...).\n", status_code=401, headers=headers)
    await response(scope, receive, send)
