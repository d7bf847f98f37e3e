"""Talking to a worker's web views from the command line, the demo and the tests: the bearer
token is CJO_TOKEN when set, else one of the tokens this machine's settings configure (admin
for a POST, read otherwise)."""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

from cjo.settings import Settings


class WebError(RuntimeError):
    def __init__(self, status: int, body: dict | str) -> None:
        message = body.get("error", body) if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.body = status, body


def token_for(settings: Settings, method: str = "GET") -> str | None:
    if os.environ.get("CJO_TOKEN"):
        return os.environ["CJO_TOKEN"]
    tokens = settings.admin_tokens if method != "GET" else \
        settings.read_tokens + settings.admin_tokens
    return tokens[0] if tokens else None


def call(settings: Settings, path: str, method: str = "GET", body: bytes | None = None,
         token: str | None = None, content_type: str = "application/yaml",
         timeout: float = 30.0) -> tuple[int, str, bytes]:
    """(status, content type, body) of one request to the worker at CJO_WEB_PORT; HTTP errors
    are answers too."""
    token = token if token is not None else token_for(settings, method)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body is not None:
        headers["Content-Type"] = content_type
    url = f"http://127.0.0.1:{settings.web_port}{path}"
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def get_json(settings: Settings, path: str, **kw) -> dict:
    """The JSON of a successful GET; WebError otherwise."""
    status, _, data = call(settings, path, **kw)
    try:
        body = json.loads(data)
    except ValueError:
        body = data.decode(errors="replace")
    if status != 200:
        raise WebError(status, body)
    return body
