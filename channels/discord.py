"""Discord: one embed per notification, POSTed to an execute-webhook URL.

The target is the user's own webhook, else the server channel's
(TIDINGS_DISCORD_WEBHOOK_URL). A webhook that answers 404 or 401 is gone: it is
recorded as a DisabledTarget and never called again, since Discord bans senders
that keep calling dead webhooks; a new URL is a new target. Rate limits are
honoured per webhook and shared by every thread of the process.

A webhook URL holds a token: only ``redact_url(url)`` reaches a message or a log.

Discord renders markdown in embeds, so text that comes from events is escaped
(a team name cannot add a link). ``templates/<type>/discord.md``, when present,
writes the description; like an HTML template is autoescaped, it sees the usual
context with its strings escaped. Mentions never ping: every request sends
``allowed_mentions: {"parse": []}``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import urllib.parse
from typing import Any

import jinja2
import requests
import structlog

from dispatcher.core import clock
from dispatcher.core.errors import DeliveryError, DeliverySkipped
from dispatcher.core.rendering import get_renderer
from dispatcher.core.settings import Settings
from dispatcher.storage.models import DisabledTarget

from .base import Channel, Notification
from .discord_format import escape_context, escape_markdown, fit_message
from .http import HttpClient, redact_url
from .ratelimit import RateLimiter

log = structlog.get_logger("tidings.discord")

#: Seconds to wait after a 429 that says nothing about how long.
DEFAULT_RETRY_AFTER = 5.0

#: Embed colour by the first part of the type name.
COLOURS = {
    "team": 0x5865F2,
    "tournament": 0xE67E22,
    "match": 0x57F287,
    "ranking": 0x9B59B6,
    "sponsor": 0xEB459E,
    "promotion": 0xEB459E,
    "payout": 0x1ABC9C,
    "payment": 0x1ABC9C,
    "achievement": 0xF1C40F,
    "system": 0x95A5A6,
}
DEFAULT_COLOUR = 0x99AAB5
#: One limiter per process: every thread and channel instance shares what Discord told us.
LIMITER = RateLimiter()

# --- Requests and responses ----------------------------------------------------------------------


def target_key(url: str) -> str:
    """The key of a webhook URL in DisabledTarget and the limiter: its sha256, so no token is kept."""
    return hashlib.sha256(url.encode()).hexdigest()


def execute_url(url: str) -> str:
    """The URL to POST to: ``?wait=true`` added, and API v10 named when the URL names no version.

    URLs copied from Discord say /api/webhooks/…, which is API v6, where a 429's
    retry_after counts milliseconds; v10 counts seconds.
    """
    parts = urllib.parse.urlsplit(url)
    path = parts.path
    if path.startswith("/api/webhooks/"):
        path = "/api/v10/" + path[len("/api/") :]
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k != "wait"]
    query.append(("wait", "true"))
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, urllib.parse.urlencode(query), ""))


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def retry_after(response: requests.Response) -> float:
    """Seconds a 429 asks us to wait: retry_after in the body, else the Retry-After header."""
    for value in (_json(response).get("retry_after"), response.headers.get("Retry-After")):
        try:
            seconds = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return DEFAULT_RETRY_AFTER


def rate_limit_headers(response: requests.Response) -> tuple[int, float] | None:
    """(X-RateLimit-Remaining, X-RateLimit-Reset-After) if the response has both."""
    try:
        remaining, reset_after = (
            int(response.headers["X-RateLimit-Remaining"]),
            float(response.headers["X-RateLimit-Reset-After"]),
        )
    except (KeyError, ValueError):
        return None
    return (remaining, reset_after) if math.isfinite(reset_after) and reset_after >= 0 else None


def discord_error(response: requests.Response) -> str:
    """'Discord answered 404: Unknown Webhook (code 10015)', from the status and the JSON body."""
    body = _json(response)
    text = f"Discord answered {response.status_code}"
    if body.get("message"):
        text += f": {str(body['message'])[:200]}"
    if body.get("code") is not None:
        text += f" (code {body['code']})"
    if body.get("errors"):
        text += f" {json.dumps(body['errors'], separators=(',', ':'))[:300]}"
    return text


def colour(type_name: str) -> int:
    return COLOURS.get(type_name.partition(".")[0], DEFAULT_COLOUR)


def is_link(url: str | None) -> bool:
    """Discord rejects the whole message for an embed url that is not an absolute http(s) URL."""
    if not url:
        return False
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and len(url) <= 2048


# --- The channel ---------------------------------------------------------------------------------


class DiscordChannel(Channel):
    """Posts each delivery as an embed to the user's Discord webhook, or to the server channel's."""

    name = "discord"
    addresses = "user"
    quiet_hours = True
    process_group = "hooks"
    priority = 10
    batch_size = 10
    transactional = False
    renders = frozenset({"subject", "text"})

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.http = HttpClient(settings)
        self.limiter = LIMITER

    def deliver(self, notification: Notification) -> None:
        url = self.target(notification)
        key, redacted = target_key(url), redact_url(url)
        disabled = DisabledTarget.get_or_none(DisabledTarget.key == key)
        if disabled is not None:
            raise DeliverySkipped(f"the Discord webhook {redacted} is disabled: {disabled.reason}")
        body = json.dumps(self.build_payload(notification), ensure_ascii=False).encode()
        self.limiter.acquire(key)
        response = self.http.post(execute_url(url), body=body, headers={"Content-Type": "application/json"})
        self.handle(response, key, redacted)

    def target(self, notification: Notification) -> str:
        """The user's webhook URL, else the server channel's; DeliverySkipped if neither is set."""
        user = notification.user
        if user is not None and user.discord_webhook_url:
            return user.discord_webhook_url
        if self.settings.discord_webhook_url:
            return self.settings.discord_webhook_url
        raise DeliverySkipped("no Discord webhook: the user has none and TIDINGS_DISCORD_WEBHOOK_URL is not set")

    def build_payload(self, notification: Notification) -> dict[str, Any]:
        """The execute-webhook JSON: one embed, within Discord's limits, pinging no one."""
        type_name = notification.kind.name
        when = notification.event.time or clock.now()
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        embed: dict[str, Any] = {
            "title": notification.rendered.subject,
            "description": self.description(notification),
            "color": colour(type_name),
            "timestamp": when.astimezone(dt.UTC).isoformat(),
            "footer": {"text": f"{self.settings.product_name} · {type_name}"},
        }
        if is_link(notification.url):
            embed["url"] = notification.url
        embed = {k: v for k, v in embed.items() if v != ""}
        return fit_message({"embeds": [embed], "allowed_mentions": {"parse": []}})

    def description(self, notification: Notification) -> str:
        """templates/<type>/discord.md rendered, else the text email."""
        type_name = notification.kind.name
        try:
            markdown = get_renderer(self.settings.templates_dir).render_optional(
                type_name, "discord.md", escape_context(notification.template_context)
            )
        except jinja2.TemplateError as e:
            raise DeliveryError(f"template error in {type_name}/discord.md: {e}", permanent=True) from e
        if markdown is not None:
            return markdown.strip()
        return escape_markdown(notification.text_without_link)

    def handle(self, response: requests.Response, key: str, redacted: str) -> None:
        """Record the rate limit the response tells; raise unless it is a success."""
        status = response.status_code
        limits = rate_limit_headers(response)
        if limits is not None:
            self.limiter.update(key, *limits)
        if 200 <= status < 300:
            return
        if status == 429:
            wait = retry_after(response)
            self.limiter.block(key, wait)
            raise DeliveryError(f"Discord rate limit on {redacted}: retry after {wait:g} s", retry_after=wait)
        reason = discord_error(response)
        if status in (401, 404):
            self.disable(key, redacted, reason)
            raise DeliveryError(f"the Discord webhook {redacted} is gone, not called again: {reason}", permanent=True)
        raise DeliveryError(f"{reason} for {redacted}", permanent=status < 500)

    def disable(self, key: str, redacted: str, reason: str) -> None:
        """Record that the webhook is gone, so that no delivery calls it again."""
        now = clock.now()
        DisabledTarget.insert(
            key=key, channel=self.name, description=redacted[:255], reason=reason, disabled_at=now
        ).on_conflict(
            conflict_target=[DisabledTarget.key],
            update={
                DisabledTarget.reason: reason,
                DisabledTarget.description: redacted[:255],
                DisabledTarget.disabled_at: now,
            },
        ).execute()
        log.warning("discord_webhook_disabled", webhook=redacted, reason=reason)

    def close(self) -> None:
        self.http.close()
