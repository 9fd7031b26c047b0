"""What a product's pages load from Tidings, with nothing to build or install: ``/ui/``.

- ``/ui/tidings-inbox.js``: the ``<tidings-inbox>`` element, a bell with the unread count and a panel of
  the caller's notifications, live over the SSE stream;
- ``/ui/tidings-preferences.js``: the ``<tidings-preferences>`` element, the preference centre;
- ``/ui/preferences``: the preference centre as a page of its own, for a link (the unsubscribe page's).
  It takes the user token from the URL's fragment (``#token=…``), which no server and no log sees,
  and removes it from the address bar.

The scripts are plain JavaScript modules (dispatcher/api/static/), served as they are in the repository.
They style themselves with constructed style sheets, so a host page's Content-Security-Policy needs
no ``'unsafe-inline'``; a host page on another origin needs it in TIDINGS_CORS_ORIGINS.
"""

from __future__ import annotations

import functools
import hashlib
import string
from html import escape
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from .problems import ApiError
from .state import api_state

router = APIRouter(prefix="/ui", include_in_schema=False)

ASSETS = Path(__file__).parent / "static"
SCRIPTS = ("tidings-inbox.js", "tidings-preferences.js", "tidings-element.js", "preferences-page.js")
#: The page loads only the two scripts, from here; it talks only to this API.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@functools.cache
def _script(name: str) -> tuple[bytes, str]:
    """A script's bytes and its ETag (read once per process)."""
    body = (ASSETS / name).read_bytes()
    return body, f'"{hashlib.sha256(body).hexdigest()[:32]}"'


@router.get("/preferences")
def preferences_page(request: Request) -> HTMLResponse:
    settings = api_state(request).settings
    html = PAGE.substitute(title=escape(f"{settings.product_name}: notification preferences"))
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": PAGE_POLICY,
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
        },
    )


@router.get("/{name}")
def script(name: str, request: Request) -> Response:
    if name not in SCRIPTS:
        raise ApiError(404, "Not Found", f"no script {name[:100]!r} under /ui/")
    body, etag = _script(name)
    headers = {
        "ETag": etag,
        "Cache-Control": "public, max-age=300",  # a new Tidings is picked up within minutes
        "X-Content-Type-Options": "nosniff",
        "Access-Control-Allow-Origin": "*",  # a module script from another origin is fetched in CORS mode
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="text/javascript; charset=utf-8", headers=headers)


PAGE = string.Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<title>$title</title>
<script type="module" src="/ui/preferences-page.js"></script>
</head>
<body>
<main>
<tidings-preferences></tidings-preferences>
</main>
</body>
</html>
""")
