"""Deny by default: the ASGI middleware that keeps every route of the app closed to anyone
without a valid Gradio session, except the login page's own static files.

It relies on two Gradio internals, pinned by tests/test_annotation_app.py so that a Gradio
upgrade that changes them fails there, loudly, rather than locking everyone out (or in):
- the session cookie is `access-token-{app.cookie_id}` (`access-token-unsecure-…` over plain
  HTTP), and `app.tokens` maps a live token to its user;
- the login page inlines the API schema as `window.gradio_api_info = …;</script>`, which we
  strip for anonymous visitors.
"""

from __future__ import annotations

import json
import re
from http.cookies import SimpleCookie

_API_INFO = re.compile(rb"window\.gradio_api_info = .*?;</script>", re.S)


class RequireLogin:
    """ASGI middleware: without a valid Gradio session cookie only the login page's assets load."""

    PUBLIC = {"/login", "/login/", "/logout", "/favicon.ico", "/theme.css", "/gradio_api/theme.css",
              "/manifest.json", "/robots.txt",
              "/gradio_api/startup-events"}  # Gradio calls this itself once at launch; it returns no data
    PUBLIC_PREFIXES = ("/assets/", "/static/", "/svelte/", "/gradio_api/assets/", "/gradio_api/static/")

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path = scope["path"]
        root = scope.get("root_path") or ""
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        if self._logged_in(scope):
            return await self.app(scope, receive, send)
        if path == "/":  # the login page; Gradio would also inline the API schema: strip it
            return await self.app(scope, receive, self._without_api_info(send))
        if path in self.PUBLIC or path.startswith(self.PUBLIC_PREFIXES):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps({"detail": "Not authenticated: log in first"}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _without_api_info(send):
        start: dict = {}
        chunks: list[bytes] = []

        async def wrapped(message):
            if message["type"] == "http.response.start":
                start.update(message)
                return
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                empty = b'window.gradio_api_info = {"named_endpoints": {}, "unnamed_endpoints": {}};</script>'
                body = _API_INFO.sub(empty, b"".join(chunks))
                headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
                headers.append((b"content-length", str(len(body)).encode()))
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        return wrapped

    @staticmethod
    def _logged_in(scope) -> bool:
        app = scope.get("app")
        raw = b"; ".join(v for k, v in scope.get("headers", []) if k == b"cookie").decode("latin-1")
        if app is None or not raw:
            return False
        cookies = SimpleCookie()
        try:
            cookies.load(raw)
        except Exception:  # a malformed cookie header is simply no session
            return False
        for name in session_cookie_names(app.cookie_id):
            if name in cookies and app.tokens.get(cookies[name].value):
                return True
        return False


def session_cookie_names(cookie_id: str) -> tuple[str, str]:
    """The names Gradio gives its session cookie (over HTTPS, and over plain HTTP)."""
    return f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"
