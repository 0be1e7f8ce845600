"""Routes of the dashboard: one HTML page for every dashboard path, and its static assets.

Everything is written by the project and read from the package once; nothing comes from a CDN.
Every answer carries a strict Content-Security-Policy: scripts, styles and fetches from this
origin only, no inline script or style, no frames, no plugins, no form posts elsewhere.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from litestar import Response, get
from litestar.params import FromPath
from litestar.response import Redirect

from service.errors import NotFoundError

STATIC_DIR = Path(__file__).parent / "static"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    # A new version of the service may change a script: browsers revalidate, cheaply (small files).
    "cache-control": "no-cache",
}
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml"}


@cache
def _asset(name: str) -> bytes | None:
    path = STATIC_DIR / name
    if "/" in name or name.startswith(".") or path.suffix not in MEDIA_TYPES or not path.is_file():
        return None
    return path.read_bytes()


def _page() -> Response[bytes]:
    return Response(_asset("index.html") or b"", media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


@get(["/dashboard", "/dashboard/"], include_in_schema=False)
async def dashboard() -> Response[bytes]:
    """The dashboard's page; its script routes by the URL's fragment (`#/jobs`, `#/files`…)."""
    return _page()


@get("/", include_in_schema=False)
async def root() -> Redirect:
    return Redirect("/dashboard/")


@get("/dashboard/static/{name:str}", include_in_schema=False)
async def dashboard_asset(name: FromPath[str]) -> Response[bytes]:
    body = _asset(name)
    if body is None:
        raise NotFoundError(f"No such dashboard file: {name}")
    media_type = MEDIA_TYPES[Path(name).suffix]
    charset = "; charset=utf-8" if media_type.startswith("text/") else ""
    return Response(body, media_type=media_type + charset, headers=SECURITY_HEADERS)


DASHBOARD_ROUTES = [dashboard, root, dashboard_asset]
