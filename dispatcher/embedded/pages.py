"""The embedded mode's own pages, under /dev/: the outbox, the webhooks received, and the receiver itself.

They have no authentication (the embedded mode listens on loopback) and are not part of the API's
OpenAPI document. Every page is rendered with autoescaping; an email's HTML part is served on its own
URL, shown in a sandboxed iframe, with a Content-Security-Policy that runs nothing and loads nothing.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import jinja2
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from dispatcher.api.auth import mint_user_token
from dispatcher.api.database import session
from dispatcher.api.events import raw_body
from dispatcher.api.problems import ApiError
from dispatcher.api.state import api_state

from .outbox import KeptEmail, read_email, read_outbox
from .receiver import LABEL, Receiver

router = APIRouter(prefix="/dev", include_in_schema=False)

PAGES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "pages"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
#: The pages' own policy: their inline styles, nothing else from anywhere.
PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; frame-src 'self'; base-uri 'none'; form-action 'none'"
#: The start page hosts the inbox bell and the preference centre: Tidings' own scripts, and its API.
HOST_POLICY = PAGE_POLICY + "; script-src 'self'; connect-src 'self'"
#: Whose inbox and preferences the start page shows (the demo's first user), and for how long it signs them in.
DEMO_USER = "ana"
DEMO_TOKEN_TTL = 12 * 3600.0
#: An email's HTML part: no script, no plugin, no request anywhere but images inlined in it.
EMAIL_POLICY = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"


@dataclasses.dataclass(frozen=True)
class DevState:
    """Where the embedded mode keeps what it shows."""

    outbox: Path
    receiver: Receiver
    #: The receiver's URL without the label: http://127.0.0.1:<port>/dev/webhooks/in/
    receiver_url: str


def dev_state(request: Request) -> DevState:
    state: DevState = request.app.state.dev
    return state


Dev = Annotated[DevState, Depends(dev_state)]


def _page(name: str, *, policy: str = PAGE_POLICY, **context: object) -> HTMLResponse:
    html = PAGES.get_template(name).render(**context)
    return HTMLResponse(html, headers={"Content-Security-Policy": policy, "X-Content-Type-Options": "nosniff"})


def _email(dev: DevState, name: str) -> KeptEmail:
    email = read_email(dev.outbox, name)
    if email is None:
        raise ApiError(404, "Not Found", f"no email {name[:100]!r} in the outbox")
    return email


@router.get("/")
def index(dev: Dev, request: Request) -> HTMLResponse:
    """The start page, and a demo host page: the bell and the preference centre, signed in as the demo user."""
    settings = api_state(request).settings
    secret = settings.user_token_secret
    ttl = min(DEMO_TOKEN_TTL, settings.user_token_max_ttl)
    return _page(
        "index.html",
        policy=HOST_POLICY,
        user=DEMO_USER,
        token=mint_user_token(secret, DEMO_USER, ttl=ttl) if secret else None,
        outbox=str(dev.outbox),
        webhooks=str(dev.receiver.directory),
        receiver=dev.receiver_url,
        emails=len(read_outbox(dev.outbox)),
        requests=len(dev.receiver.read()),
    )


@router.get("/outbox")
def outbox(dev: Dev) -> HTMLResponse:
    return _page("outbox.html", emails=read_outbox(dev.outbox), directory=str(dev.outbox))


@router.get("/outbox/{name}")
def email(dev: Dev, name: str) -> HTMLResponse:
    kept = _email(dev, name)
    return _page(
        "email.html",
        email=kept,
        text=kept.part("plain"),
        has_html=kept.part("html") is not None,
        headers=kept.headers(),
    )


@router.get("/outbox/{name}/html")
def email_html(dev: Dev, name: str) -> HTMLResponse:
    html = _email(dev, name).part("html")
    if html is None:
        raise ApiError(404, "Not Found", "this email has no HTML part")
    return HTMLResponse(html, headers={"Content-Security-Policy": EMAIL_POLICY, "X-Content-Type-Options": "nosniff"})


@router.get("/outbox/{name}/raw")
def email_raw(dev: Dev, name: str) -> PlainTextResponse:
    kept = _email(dev, name)
    return PlainTextResponse(kept.message.as_string(), headers={"X-Content-Type-Options": "nosniff"})


@router.get("/webhooks")
def webhooks(dev: Dev) -> HTMLResponse:
    return _page("webhooks.html", requests=dev.receiver.read(), receiver=dev.receiver_url)


@router.post("/webhooks/in/{label}", status_code=204)
def receive(dev: Dev, label: str, request: Request, raw: Annotated[bytes, Depends(raw_body)]) -> Response:
    """The built-in receiver: keep the request (and whether its signature holds), answer 204."""
    if not LABEL.match(label):
        raise ApiError(404, "Not Found", "a receiver label is 1 to 64 letters, digits, '-' or '_'")
    headers = {name.lower(): value for name, value in request.headers.items()}
    with session():
        dev.receiver.keep(label, headers, raw)
    return Response(status_code=204)
