"""One-click unsubscribe (RFC 8058): ``GET /unsubscribe/{token}`` shows a page, ``POST`` turns email off.

No auth: the signed token in the URL (dispatcher/core/unsubscribe.py) is the authority, and it
names one user and one type. GET changes nothing, since mail scanners follow links. POST, as a
mail client sends it (``List-Unsubscribe=One-Click``, form-encoded) or as the page's button does,
applies ``tidings.preferences.set`` through ingest, as the CLI does: the channels whose messages
carry the link (the ``unsubscribe_link`` fact) are switched off for the token's user and type,
and the command is recorded in the events table (source ``/tidings/unsubscribe``). Applying it
again changes nothing more. A forged, altered or expired token is a 400 page that changes
nothing; a critical type's locked channels stay on, and the page says so.

The pages are HTML (templates/pages/unsubscribe.html, autoescaped), sent with a strict
Content-Security-Policy and no-referrer, no-store headers: the token is in the URL. For the same
reason the access log shows ``/unsubscribe/<token>`` (:func:`hide_tokens_in_access_log`): anyone
reading the log could otherwise unsubscribe the users.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import logging
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from channels import channel_names
from dispatcher.core import clock
from dispatcher.core.authority import Sender
from dispatcher.core.catalog import NotificationType
from dispatcher.core.errors import InvalidEvent
from dispatcher.core.events import CloudEvent
from dispatcher.core.logs import redact_text
from dispatcher.core.settings import PROJECT_ROOT
from dispatcher.core.unsubscribe import InvalidToken, verify_token
from dispatcher.pipeline.ingest import ingest_event
from dispatcher.pipeline.routing import locked
from dispatcher.storage.db import database, transaction

from .auth import mint_user_token
from .state import ApiState, api_state

router = APIRouter(tags=["unsubscribe"])

PAGE = "pages/unsubscribe.html"
UNSUBSCRIBE_SOURCE = "/tidings/unsubscribe"
PREFERENCES_SET = "tidings.preferences.set"
#: Longer than any token Tidings makes (ids of 255 characters): anything longer is refused unread.
MAX_TOKEN_LENGTH = 2048
#: Who a link's command comes from: the user the signed token names. Like the CLI's, it applies
#: whatever time a stored preference claims (the click is the user's newest word); it is not
#: privileged, and its data names only the token's user and type.
LINK_SENDER = Sender(publisher=None, privileged=False, operator=True)
#: Seconds the preference centre's link from the unsubscribe page stays signed in.
PREFERENCES_TOKEN_TTL = 15 * 60

State = Literal["confirm", "done", "locked", "gone", "invalid"]
STATUS: dict[State, int] = {"confirm": 200, "done": 200, "locked": 409, "gone": 410, "invalid": 400}

_HTML = {"content": {"text/html": {"schema": {"type": "string"}}}}
RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "The link is forged, altered or expired: a page saying so; nothing changed", **_HTML},
    409: {"description": "POST: the type is critical, its email cannot be turned off; nothing changed", **_HTML},
    410: {"description": "The type is no longer in the catalog; nothing changed", **_HTML},
}
ONE_CLICK_BODY = {
    "requestBody": {
        "required": False,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {"List-Unsubscribe": {"type": "string", "enum": ["One-Click"]}},
                }
            }
        },
    }
}


#: A token in a query string (the SSE stream's ``?token=``, for EventSource, which cannot send headers).
_QUERY_TOKEN = re.compile(r"([?&](?:token|last_event_id)=)[^&\s]*")


class HideTokens(logging.Filter):
    """Replaces the tokens in the path uvicorn's access log prints (its record's third argument): an
    unsubscribe token in the path, a user token in the query."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            path = _QUERY_TOKEN.sub(lambda match: match.group(1) + "<redacted>", redact_text(args[2]))
            record.args = (*args[:2], path, *args[3:])
        return True


def hide_tokens_in_access_log() -> None:
    """Install :class:`HideTokens` on uvicorn's access logger, once per process."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, HideTokens) for f in logger.filters):
        logger.addFilter(HideTokens())


@functools.lru_cache(maxsize=4)
def _pages(templates_dir: Path) -> tuple[jinja2.Template, str]:
    """The page template (TIDINGS_TEMPLATES_DIR's, else Tidings' own) and the CSP hashes of its <style> blocks."""
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(
            [jinja2.FileSystemLoader(str(templates_dir)), jinja2.FileSystemLoader(str(PROJECT_ROOT / "templates"))]
        ),
        autoescape=True,  # every value, whatever the file is called
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    source = env.loader.get_source(env, PAGE)[0] if env.loader else ""
    source = re.sub(r"\{#.*?#\}", "", source, flags=re.DOTALL)  # a comment renders as nothing
    hashes = " ".join(style_hash(style) for style in re.findall(r"<style>(.*?)</style>", source, flags=re.DOTALL))
    return env.get_template(PAGE), hashes


def style_hash(style: str) -> str:
    """The CSP source that allows one inline <style> block: ``'sha256-<base64>'`` of its text."""
    return f"'sha256-{base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()}'"


def security_headers(style_hashes: str) -> dict[str, str]:
    """No scripts, frames, referrer or cache: the page carries the token in its URL."""
    styles = style_hashes or "'none'"
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; style-src {styles}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        ),
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "X-Robots-Tag": "noindex",
    }


def render_page(
    state: ApiState,
    page: State,
    kind: NotificationType | None = None,
    *,
    status: int | None = None,
    user_id: str | None = None,
) -> HTMLResponse:
    """One of the pages, with its status (``STATUS`` unless given) and the security headers; with the link's
    ``user_id``, a link to the preference centre (:func:`preferences_url`)."""
    template, hashes = _pages(state.settings.templates_dir)
    product = {"name": state.settings.product_name, "url": state.settings.product_url}
    html = template.render(
        state=page, kind=kind, product=product, preferences_url=preferences_url(state, user_id) if user_id else None
    )
    return HTMLResponse(html, status_code=status or STATUS[page], headers=security_headers(hashes))


def preferences_url(state: ApiState, user_id: str) -> str | None:
    """The preference centre (/ui/preferences) for the link's user, signed in for PREFERENCES_TOKEN_TTL by a
    user token in the URL's fragment (no server or log sees it); None without TIDINGS_USER_TOKEN_SECRET.

    The unsubscribe token already lets whoever holds the email change this user's preferences for one type;
    this extends it, for a quarter of an hour after the click, to the user's other preferences.
    """
    secret = state.settings.user_token_secret
    if not secret:
        return None
    ttl = min(PREFERENCES_TOKEN_TTL, state.settings.user_token_max_ttl)
    return f"/ui/preferences#token={mint_user_token(secret, user_id, ttl=ttl)}"


def link_channels(kind: NotificationType) -> list[str]:
    """The channels an unsubscribe link turns off for ``kind``: those carrying it, unless locked (critical)."""
    return [name for name in channel_names(unsubscribe_link=True) if not locked(kind, name)]


def _read(state: ApiState, token: str) -> tuple[str, NotificationType] | State:
    """The token's user and type, or the page that says why there is none."""
    secret = state.settings.secret_key
    if not secret or len(token) > MAX_TOKEN_LENGTH:
        return "invalid"
    try:
        user_id, type_name = verify_token(secret, token)
    except InvalidToken:
        return "invalid"
    kind = state.catalog.get(type_name)
    return (user_id, kind) if kind is not None else "gone"


def turn_off(state: ApiState, user_id: str, kind: NotificationType, channels: Sequence[str]) -> str:
    """Apply ``tidings.preferences.set`` switching ``channels`` off for (user, type), as the CLI applies
    commands; "applied". The items name no mode, so a channel's digest mode is kept: turning it back on
    restores it."""
    with database.connection_context(), transaction():
        preferences = [{"type": kind.name, "channel": name, "enabled": False} for name in channels]
        event = CloudEvent(
            id=str(uuid.uuid4()),
            source=UNSUBSCRIBE_SOURCE,
            type=PREFERENCES_SET,
            data={"user": user_id, "preferences": preferences},
            time=clock.now().replace(tzinfo=dt.UTC),
        )
        return ingest_event(event, state.catalog, [], sender=LINK_SENDER).outcome


@router.get(
    "/unsubscribe/{token}",
    response_class=HTMLResponse,
    summary="The unsubscribe page of a link in an email: names the type, changes nothing",
    responses=RESPONSES,
)
def unsubscribe_page(token: str, request: Request) -> HTMLResponse:
    state = api_state(request)
    found = _read(state, token)
    if isinstance(found, str):
        return render_page(state, found)
    user_id, kind = found
    if not link_channels(kind):
        return render_page(state, "locked", kind, status=200, user_id=user_id)  # nothing was asked: it informs
    return render_page(state, "confirm", kind, user_id=user_id)


@router.post(
    "/unsubscribe/{token}",
    response_class=HTMLResponse,
    summary="One-click unsubscribe (RFC 8058): turns email off for the link's user and type",
    responses=RESPONSES,
    openapi_extra=ONE_CLICK_BODY,
)
def unsubscribe(token: str, request: Request) -> HTMLResponse:
    # The body (List-Unsubscribe=One-Click) is not read: the signed token alone decides.
    state = api_state(request)
    found = _read(state, token)
    if isinstance(found, str):
        return render_page(state, found)
    user_id, kind = found
    channels = link_channels(kind)
    if not channels:
        return render_page(state, "locked", kind, user_id=user_id)
    try:
        turn_off(state, user_id, kind, channels)
    except InvalidEvent:  # a genuine token whose ids the command refuses: nothing was applied
        return render_page(state, "invalid")
    return render_page(state, "done", kind, user_id=user_id)
