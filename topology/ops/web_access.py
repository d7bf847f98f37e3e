"""Who may use the web views. Profile data is personal data, so every view but the probes and
the metrics needs a bearer token: a read token may GET, an admin token may also POST. The check
is an aiohttp middleware in front of every route of the worker's web server, Faust's own
included, so no view can be added without it. Request bodies over `max_body_bytes` are refused
before they are read.

A request aiohttp cannot parse (a header over its 8 KB line limit, too many headers, a
malformed line) never reaches the middleware: aiohttp answers 400 itself, with the parser's
message, which quotes the start of the offending line (a bearer token, for an oversized
Authorization header), and logs the same. `web_options` makes that answer, and its log line,
say the status and the kind of error only.
"""
from __future__ import annotations

import hmac
from http import HTTPStatus

from aiohttp import web, web_protocol
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod

OPEN_PATHS = frozenset({"/health", "/ready", "/metrics"})  # probes and scrapes: no personal data
READ_METHODS = frozenset({"GET", "HEAD"})


def _error(status: int, message: str, **headers) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


def _known(token: str, tokens: tuple[str, ...]) -> bool:
    # Compare against every token in constant time: timing tells nothing about which matched.
    return any([hmac.compare_digest(token.encode(), t.encode()) for t in tokens])


def access_middleware(settings):
    read_tokens, admin_tokens = settings.read_tokens, settings.admin_tokens
    limit = settings.max_body_bytes

    @web.middleware
    async def check_access(request: web.Request, handler):
        path = request.path.rstrip("/") or "/"
        if path in OPEN_PATHS:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _error(401, "a bearer token is required (Authorization: Bearer <token>)",
                          **{"WWW-Authenticate": 'Bearer realm="cjo"'})
        token = token.strip()
        is_admin = _known(token, admin_tokens)
        if not is_admin and not _known(token, read_tokens):
            return _error(401, "unknown token", **{"WWW-Authenticate": 'Bearer realm="cjo"'})
        if request.method not in READ_METHODS and not is_admin:
            return _error(403, f"{request.method} needs an admin token")
        if request.content_length is not None and request.content_length > limit:
            return _error(413, f"request body over {limit} bytes")
        return await handler(request)

    return check_access


def _without_echo(handle_error):
    """aiohttp's `RequestHandler.handle_error`, answering a 4xx without the parser's message
    and logging the error's kind instead of its text."""
    def handle(self, request, status=500, exc=None, message=None):
        if 400 <= status < 500:
            message = (f"{status} {HTTPStatus(status).phrase}: the request could not be read "
                       "(a line or header too long, too many headers, or a malformed line)")
            if exc is not None and not isinstance(exc, BadHttpMethod):  # that one: debug log
                exc = BadHttpMessage(f"{type(exc).__name__} (the request is not repeated)")
        return handle_error(self, request, status, exc, message)

    handle.without_echo = True
    return handle


def web_options(settings) -> dict:
    """Faust's `web_application_options`: the access check, and aiohttp's own body limit for
    bodies sent without a length. Also makes aiohttp's answer to a request it cannot parse
    repeat nothing of the request (no hook for it: its handler class is patched, once)."""
    handler = web_protocol.RequestHandler
    if not getattr(handler.handle_error, "without_echo", False):
        handler.handle_error = _without_echo(handler.handle_error)
    return {"middlewares": [access_middleware(settings)],
            "client_max_size": settings.max_body_bytes}
