"""The pages the API serves itself: the dashboard, `/docs` and `/redoc`, all from api/static/.

Nothing is fetched from a CDN, so the pages work offline; the vendored files and their licences
are listed in api/static/vendor/README.md. The pages hold no data: the dashboard asks `/v1` with
the key the user types in (kept in sessionStorage, sent as the `X-API-Key` header).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
STATIC_URL = "/static"
VENDOR_URL = f"{STATIC_URL}/vendor"
FAVICON_URL = f"{VENDOR_URL}/swagger-ui/favicon-32x32.png"
# The dashboard loads only its own files and talks only to its own origin.
DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'"
)
# Swagger UI starts from an inline script; ReDoc runs a blob: worker and would show Redocly's logo
# from their CDN: img-src keeps the page offline (ReDoc drops the image when it cannot load).
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; font-src 'self' data:"
)

router = APIRouter(include_in_schema=False)


@router.get("/")
async def root() -> RedirectResponse:
    """The dashboard is the front page."""
    return RedirectResponse("/dashboard")


@router.get("/dashboard")
async def dashboard() -> FileResponse:
    """The live dashboard (static; its script reads /v1)."""
    return FileResponse(
        STATIC_DIR / "dashboard" / "index.html",
        headers={"Content-Security-Policy": DASHBOARD_CSP, "Cache-Control": "no-cache"},
    )


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI from the vendored swagger-ui-dist."""
    page = get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{VENDOR_URL}/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{VENDOR_URL}/swagger-ui/swagger-ui.css",
        swagger_favicon_url=FAVICON_URL,
        swagger_ui_parameters={"validatorUrl": None},
    )
    page.headers["Content-Security-Policy"] = DOCS_CSP
    return page


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc from the vendored redoc bundle, without Google Fonts."""
    page = get_redoc_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{VENDOR_URL}/redoc/redoc.standalone.js",
        redoc_favicon_url=FAVICON_URL,
        with_google_fonts=False,
    )
    page.headers["Content-Security-Policy"] = DOCS_CSP
    return page
