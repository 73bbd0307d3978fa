"""Security headers on every response, and no changes asked for by other sites.

`SecurityMiddleware` wraps the whole app (pages, API, static files, errors):

- it adds a Content-Security-Policy that lets pages run only the scripts and styles
  under /static (the templates have no inline script, handler or style attribute),
  and the other headers in `SECURITY_HEADERS`;
- it refuses (403) a request that changes something (any method but GET, HEAD and
  OPTIONS) that a browser says comes from another site, by `Sec-Fetch-Site` or else
  by `Origin` (the check Go's `net/http.CrossOriginProtection` makes). That covers
  the login and logout forms; API calls authenticated by the login cookie need the
  CSRF token as well (see `deps.require_api_token`). Requests with an Authorization
  header are left alone: a browser never adds one to a request another site starts.

WebSockets are not HTTP responses; /api/stream checks their Origin itself.

An unhandled exception is answered by Starlette's ServerErrorMiddleware, outside every
other middleware; `server_error_response` gives that 500 the same headers.
"""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callmood.service.deps import SAFE_METHODS

_DASHBOARD_POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self'",
    "media-src": "'self'",
    # 'self' covers ws:// and wss:// to this host too (the Live page's /api/stream).
    "connect-src": "'self'",
    "worker-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def _policy(directives: dict[str, str]) -> str:
    return "; ".join(f"{name} {sources}" for name, sources in directives.items())


CONTENT_SECURITY_POLICY = _policy(_DASHBOARD_POLICY)

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    # The Live page records the microphone; nothing needs any other powerful feature.
    "Permissions-Policy": (
        "microphone=(self), camera=(), geolocation=(), payment=(), usb=(), display-capture=()"
    ),
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def policy_with_inline_scripts(html: bytes) -> str:
    """The Content-Security-Policy for a page we do not write ourselves (Swagger UI at /docs).

    Its inline scripts are allowed by their SHA-256 hash, so nothing else inline runs;
    Swagger UI also sets inline styles and draws icons from data: URLs.
    """
    hashes = [
        f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(html)
    ]
    return _policy(
        {
            **_DASHBOARD_POLICY,
            "script-src": " ".join(["'self'", *hashes]),
            "style-src": "'self' 'unsafe-inline'",
            "img-src": "'self' data:",
        }
    )


def cross_site_problem(method: str, headers: Headers) -> str | None:
    """Why a request must be refused as started by another site, or None if it need not."""
    if method in SAFE_METHODS or "authorization" in headers:
        return None
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None:
        if fetch_site in ("same-origin", "none"):
            return None
        return f"refused a {method} request from another site (Sec-Fetch-Site: {fetch_site})"
    origin = headers.get("origin")
    # Without either header it is not a browser's cross-site request (curl, scripts).
    if origin is None or urlsplit(origin).netloc == headers.get("host"):
        return None
    return f"refused a {method} request from another site (Origin: {origin})"


class SecurityMiddleware:
    """Adds the security headers to every HTTP response; refuses cross-site changes (403)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                # A route may set its own policy (the Swagger UI page does).
                headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        problem = cross_site_problem(scope["method"], Headers(scope=scope))
        if problem is not None:
            response = JSONResponse({"detail": problem}, status_code=403)
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


async def server_error_response(request: Request, error: Exception) -> Response:
    """The 500 for an unhandled exception: a plain body, no traceback, the security headers.

    Starlette's ServerErrorMiddleware calls this outside `SecurityMiddleware` (so the
    headers are set here), then re-raises the exception for the server to log.
    """
    headers = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, **SECURITY_HEADERS}
    return PlainTextResponse("Internal Server Error", status_code=500, headers=headers)
