"""Signed outgoing webhooks, to the Standard Webhooks specification.

Each request carries webhook-id (the same on every attempt of one event to one
endpoint), webhook-timestamp (per attempt) and webhook-signature
("v1,<base64 HMAC-SHA256 of 'id.timestamp.body'>"; during a secret rotation the
old secret signs too, space-separated). Receivers verify with the
``standardwebhooks`` library or ten lines of hmac (docs/webhooks.md).
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterable
from typing import Any, ClassVar, cast

import structlog

from dispatcher.amqp.bus import event_publisher
from dispatcher.amqp.publisher import PublishError, build_event
from dispatcher.commands.endpoints import secret_key
from dispatcher.core import clock
from dispatcher.core.catalog import without_personal
from dispatcher.core.errors import DeliveryError, DeliverySkipped
from dispatcher.core.events import format_time
from dispatcher.core.settings import Settings
from dispatcher.storage.models import User, WebhookEndpoint

from .base import Channel, Notification
from .http import HttpClient, redact_url

log = structlog.get_logger("tidings.webhook")

#: Statuses whose Retry-After we honour.
RETRY_AFTER_STATUSES = (429, 502, 503, 504)
NOTICE_SOURCE = "/tidings/webhooks"


def message_id(source: str, event_id: str, endpoint_id: str) -> str:
    """The webhook-id of one event to one endpoint: stable across attempts and replays."""
    return "msg_" + uuid.uuid5(uuid.NAMESPACE_URL, f"{source}\x00{event_id}\x00{endpoint_id}").hex


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One Standard Webhooks signature: "v1," + base64(HMAC-SHA256(key, "id.timestamp.body"))."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret_key(secret), signed, hashlib.sha256).digest()).decode()


def signature_header(
    endpoint: WebhookEndpoint, msg_id: str, timestamp: int, body: bytes, *, now: dt.datetime, overlap: float
) -> str:
    """The current secret's signature, and the previous one's while the rotation overlap lasts."""
    signatures = [sign(endpoint.secret, msg_id, timestamp, body)]
    if endpoint.previous_secret and endpoint.rotated_at and now < endpoint.rotated_at + dt.timedelta(seconds=overlap):
        signatures.append(sign(endpoint.previous_secret, msg_id, timestamp, body))
    return " ".join(signatures)


def scrub(value: Any, removed: set[str]) -> Any:
    """``value`` without any string in ``removed`` (compared case-insensitively), at any depth."""
    if isinstance(value, dict):
        return {k: scrub(v, removed) for k, v in value.items() if not _is_removed(v, removed)}
    if isinstance(value, list):
        return [scrub(v, removed) for v in value if not _is_removed(v, removed)]
    return value


def _is_removed(value: Any, removed: set[str]) -> bool:
    return isinstance(value, str) and value.strip().lower() in removed


def public_body(notification: Notification) -> bytes:
    """{id, type, source, time, data}: data without the catalog's personal keys (at any depth) or recipients'
    emails."""
    event = notification.event
    data = without_personal(event.data, notification.kind.personal)
    recipients = [r for r in event.data.get("recipients") or [] if isinstance(r, str)]
    if recipients:
        rows = User.select(User.email).where(User.id.in_(recipients)).tuples()
        # cast: peewee's stubs type the rows of .tuples() as model instances
        emails = {e.lower() for (e,) in cast(Iterable[tuple[str | None]], rows) if e}
        data = scrub(data, emails)
    body = {
        "id": event.id,
        "type": event.type,
        "source": event.source,
        "time": format_time(event.time) if event.time else None,
        "data": data,
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def retry_after_seconds(value: str | None, now: dt.datetime) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now.replace(tzinfo=dt.UTC)).total_seconds())


class WebhookChannel(Channel):
    """POSTs each event to the endpoints whose patterns match its type."""

    name = "webhook"
    addresses = "endpoint"
    quiet_hours = False
    process_group = "hooks"
    priority = 10
    batch_size = 10
    renders: ClassVar[frozenset[str]] = frozenset()  # the body is the event itself

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.client = HttpClient(settings)
        self.retry_schedule = settings.webhook_retry_schedule

    def deliver(self, notification: Notification) -> None:
        endpoint = WebhookEndpoint.get_or_none(WebhookEndpoint.id == notification.user_id)
        if endpoint is None:
            raise DeliverySkipped(f"the webhook endpoint {notification.user_id!r} no longer exists")
        if not endpoint.enabled:
            raise DeliverySkipped(f"the webhook endpoint {endpoint.id!r} is disabled: {endpoint.disabled_reason}")
        now = clock.now()
        body = public_body(notification)
        msg_id = message_id(notification.event.source, notification.event.id, endpoint.id)
        timestamp = int(now.replace(tzinfo=dt.UTC).timestamp())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Tidings-Webhooks/1",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(
                endpoint, msg_id, timestamp, body, now=now, overlap=self.settings.secret_rotation_overlap
            ),
        }
        try:
            response = self.client.post(endpoint.url, body=body, headers=headers)
        except DeliveryError as e:
            raise self._failure(endpoint, e, now) from e
        status = response.status_code
        if 200 <= status < 300:
            if endpoint.failing_since is not None:
                WebhookEndpoint.update(failing_since=None).where(WebhookEndpoint.id == endpoint.id).execute()
            return
        if status == 410:
            self._disable(endpoint, "the endpoint answered 410 Gone", now)
            raise DeliveryError("the endpoint answered 410 Gone: disabled", permanent=True)
        detail = f"the endpoint answered {status}"
        if 300 <= status < 400:
            detail += " (a redirect, not followed)"
        retry_after = None
        if status in RETRY_AFTER_STATUSES:
            retry_after = retry_after_seconds(response.headers.get("Retry-After"), now)
        raise self._failure(endpoint, DeliveryError(detail, retry_after=retry_after), now)

    def _failure(self, endpoint: WebhookEndpoint, error: DeliveryError, now: dt.datetime) -> DeliveryError:
        """Note a failure; an endpoint failing for too long is disabled. Returns the error to raise."""
        if error.permanent:
            return error
        WebhookEndpoint.update(failing_since=now).where(
            WebhookEndpoint.id == endpoint.id, WebhookEndpoint.failing_since.is_null()
        ).execute()
        since = endpoint.failing_since or now
        if (now - since).total_seconds() >= self.settings.webhook_disable_after:
            reason = f"failing since {format_time(since.replace(tzinfo=dt.UTC))}; last: {error}"
            self._disable(endpoint, reason, now)
            return DeliveryError(f"{error}; the endpoint is now disabled ({reason})", permanent=True)
        return error

    def _disable(self, endpoint: WebhookEndpoint, reason: str, now: dt.datetime) -> None:
        changed = (
            WebhookEndpoint.update(enabled=False, disabled_reason=reason)
            .where(
                WebhookEndpoint.id == endpoint.id,
                WebhookEndpoint.enabled == True,  # noqa: E712 - peewee
            )
            .execute()
        )
        log.warning("webhook_endpoint_disabled", endpoint=endpoint.id, url=redact_url(endpoint.url), reason=reason)
        if changed:
            self._notify_disabled(endpoint, reason, now)

    def _notify_disabled(self, endpoint: WebhookEndpoint, reason: str, now: dt.datetime) -> None:
        """Tell the endpoint's owner, or the operators, through Tidings itself."""
        recipients = [endpoint.owner] if endpoint.owner else list(self.settings.operators)
        if not recipients:
            log.warning(
                "webhook_disabled_notice_has_no_recipient",
                endpoint=endpoint.id,
                hint="set the endpoint's owner or TIDINGS_OPERATORS",
            )
            return
        data = {
            "recipients": recipients,
            "title": f"Webhook endpoint {endpoint.id} was disabled",
            "message": f"Tidings stopped sending to {redact_url(endpoint.url)}: {reason}. "
            f"Fix the receiver, then enable it again (tidings webhooks enable {endpoint.id}).",
        }
        event = build_event(
            "system.announcement", data, source=NOTICE_SOURCE, id=f"disabled:{endpoint.id}:{now.isoformat()}"
        )
        try:
            with event_publisher(self.settings) as publisher:
                publisher.publish(event)
        except PublishError as e:
            log.error("webhook_disabled_notice_failed", endpoint=endpoint.id, error=str(e))

    def close(self) -> None:
        self.client.close()
