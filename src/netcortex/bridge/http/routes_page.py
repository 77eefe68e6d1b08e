"""Bridge, HTTP: the status page — ``GET /`` and ``GET /static/{name}`` (issue 9).

The page is three files shipped as package data in ``bridge/http/static/``
(``index.html``, the ES module ``app.js`` and ``style.css``): no build step, no
CDN, no framework. They are read once when the router is made and served from
memory with:

* the right ``Content-Type`` (``text/html``, ``text/javascript``, ``text/css``,
  all ``charset=utf-8``) and ``X-Content-Type-Options: nosniff``;
* a strict ``Content-Security-Policy``: scripts, styles and fetches from this
  origin only, no inline script or style, no frames, no plugins;
* caching by content: ``index.html`` refers to the assets as
  ``/static/<name>?v=<hash of the file>``; a request with the current hash is
  ``Cache-Control: public, max-age=31536000, immutable``, anything else
  (``index.html`` itself, an asset without or with an old ``v``) is
  ``no-cache`` — revalidated with its ``ETag`` (``If-None-Match`` → 304).

No authentication for these files (they hold no data); the page asks for the
API token and sends it on its own ``/api/v1`` requests. The routes are left out
of the OpenAPI document (they are not part of the API).

May import: FastAPI (and the standard library).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Final

from fastapi import APIRouter, HTTPException, Request, Response

__all__ = ["ASSETS", "CSP", "PAGE_PATH", "page_router"]

PAGE_PATH: Final = "/"
_STATIC_PACKAGE: Final = "netcortex.bridge.http"
_STATIC_DIR: Final = "static"

#: The files served under ``/static/`` (nothing else is, whatever lies beside them).
ASSETS: Final[dict[str, str]] = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
_INDEX: Final = "index.html"
_HTML_TYPE: Final = "text/html; charset=utf-8"

#: Same-origin scripts, styles and fetches only; nothing inline, nothing framed.
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_COMMON_HEADERS: Final[dict[str, str]] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_IMMUTABLE: Final = "public, max-age=31536000, immutable"
_REVALIDATE: Final = "no-cache"


@dataclass(frozen=True, slots=True)
class _File:
    body: bytes
    content_type: str
    etag: str
    version: str


def _load(name: str, content_type: str, body: bytes | None = None) -> _File:
    if body is None:
        body = resources.files(_STATIC_PACKAGE).joinpath(_STATIC_DIR, name).read_bytes()
    digest = hashlib.sha256(body).hexdigest()
    return _File(body, content_type, f'"{digest[:32]}"', digest[:16])


def _answer(request: Request, file: _File, cache: str) -> Response:
    headers = {**_COMMON_HEADERS, "Cache-Control": cache, "ETag": file.etag}
    if file.etag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=304, headers=headers)
    body = b"" if request.method == "HEAD" else file.body
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(file.body))
    return Response(body, media_type=file.content_type, headers=headers)


def page_router() -> APIRouter:
    """``GET|HEAD /`` (the page) and ``GET|HEAD /static/{name}`` (its assets), no auth.

    Raises:
        FileNotFoundError: an asset is missing from the installed package.
    """
    assets = {name: _load(name, ctype) for name, ctype in ASSETS.items()}
    html = resources.files(_STATIC_PACKAGE).joinpath(_STATIC_DIR, _INDEX).read_text("utf-8")
    for name, file in assets.items():
        html = html.replace(f'"/static/{name}"', f'"/static/{name}?v={file.version}"')
    index = _load(_INDEX, _HTML_TYPE, html.encode())
    router = APIRouter(include_in_schema=False)

    @router.api_route(PAGE_PATH, methods=["GET", "HEAD"])
    async def page(request: Request) -> Response:
        return _answer(request, index, _REVALIDATE)

    @router.api_route("/static/{name}", methods=["GET", "HEAD"])
    async def asset(request: Request, name: str) -> Response:
        file = assets.get(name)
        if file is None:
            raise HTTPException(404, "no such file")
        fresh = request.query_params.get("v") == file.version
        return _answer(request, file, _IMMUTABLE if fresh else _REVALIDATE)

    return router
