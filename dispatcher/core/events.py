"""CloudEvents: parse a raw body into a checked event, or say exactly why not.

Pure functions; nothing here touches the broker or the database.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from typing import Any

from dispatcher.core.catalog import CONTROL_PREFIX, Catalog
from dispatcher.core.errors import InvalidEvent
from dispatcher.core.results import DATA_CHECKS

MAX_RECIPIENTS = 10_000
MAX_ID_LENGTH = 255
ROUTING_KEYS = ("recipients", "topic", "deliver_at", "cancel_key")
RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d{1,9})?([Zz]|[+-]\d\d:\d\d)?")
#: Fields of command data that hold secrets, tokens or addresses: stored as REDACTED in the events table.
SECRET_FIELDS = frozenset({"secret", "url", "discord_webhook_url", "email"})
REDACTED = "<redacted>"


@dataclasses.dataclass(frozen=True)
class CloudEvent:
    """A checked CloudEvents 1.0 event."""

    id: str
    source: str
    type: str
    data: dict[str, Any]
    time: dt.datetime | None = None
    subject: str | None = None

    @property
    def is_command(self) -> bool:
        return self.type.startswith(CONTROL_PREFIX)

    @property
    def recipients(self) -> list[str]:
        return list(self.data.get("recipients") or [])

    @property
    def topic(self) -> str | None:
        return self.data.get("topic")

    @property
    def deliver_at(self) -> dt.datetime | None:
        """When to deliver (aware), if the producer scheduled it."""
        value = self.data.get("deliver_at")
        return parse_time(value, "data.deliver_at") if value is not None else None

    @property
    def cancel_key(self) -> str | None:
        return self.data.get("cancel_key")

    @property
    def context(self) -> dict[str, Any]:
        """The data a template sees: everything but the routing keys."""
        return {k: v for k, v in self.data.items() if k not in ROUTING_KEYS}

    def to_json(self) -> dict[str, Any]:
        """The structured-mode JSON form of this event."""
        body: dict[str, Any] = {
            "specversion": "1.0",
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "datacontenttype": "application/json",
            "data": self.data,
        }
        if self.time is not None:
            body["time"] = format_time(self.time)
        if self.subject is not None:
            body["subject"] = self.subject
        return body


def format_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: object, what: str = "time") -> dt.datetime:
    """An RFC 3339 timestamp with an offset, as an aware datetime."""
    if not isinstance(value, str):
        raise InvalidEvent(f"{what} must be an RFC 3339 string")
    if not RFC3339.fullmatch(value):
        raise InvalidEvent(f"{what} {value[:40]!r} is not an RFC 3339 timestamp")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidEvent(f"{what} {value[:40]!r} is not an RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        raise InvalidEvent(f"{what} {value[:40]!r} has no UTC offset")
    try:
        parsed.astimezone(dt.UTC)  # 0001-01-01T00:00+01:00 has no UTC datetime
    except OverflowError:
        raise InvalidEvent(f"{what} {value[:40]!r} is out of range in UTC") from None
    return parsed


def decode_body(body: str | bytes) -> dict[str, Any]:
    """JSON text to a dict, or InvalidEvent."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidEvent("the body is not UTF-8") from None
    try:
        value = json.loads(body)
    except (json.JSONDecodeError, RecursionError) as e:
        raise InvalidEvent(f"the body is not JSON ({e})") from None
    if not isinstance(value, dict):
        raise InvalidEvent(f"the body is JSON but not an object (got {type(value).__name__})")
    return value


def parse_event(raw: dict[str, Any], catalog: Catalog) -> CloudEvent:
    """Check a decoded body against the publisher contract (docs/contract.md)."""
    if raw.get("specversion") != "1.0":
        raise InvalidEvent('specversion must be "1.0"')
    for attribute in ("id", "source", "type"):
        value = raw.get(attribute)
        if not isinstance(value, str) or not value.strip():
            raise InvalidEvent(f"{attribute} must be a non-empty string")
        if len(value) > MAX_ID_LENGTH * 4:
            raise InvalidEvent(f"{attribute} is longer than {MAX_ID_LENGTH * 4} characters")
    content_type = raw.get("datacontenttype", "application/json")
    if content_type not in ("application/json", "application/cloudevents+json") and not (
        isinstance(content_type, str) and content_type.startswith("application/json;")
    ):
        raise InvalidEvent(f"datacontenttype {str(content_type)[:60]!r} is not application/json")
    data = raw.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidEvent("data must be a JSON object")
    time = parse_time(raw["time"]) if raw.get("time") is not None else None
    subject = raw.get("subject")
    if subject is not None and not isinstance(subject, str):
        raise InvalidEvent("subject must be a string")
    event = CloudEvent(id=raw["id"], source=raw["source"], type=raw["type"], data=data, time=time, subject=subject)
    if not event.is_command:
        _check_notification(event, catalog)
    return event


def redact_secrets(data: dict[str, Any]) -> dict[str, Any]:
    """Command data with the values of SECRET_FIELDS replaced by REDACTED."""
    return {key: REDACTED if key in SECRET_FIELDS and value is not None else value for key, value in data.items()}


def _check_notification(event: CloudEvent, catalog: Catalog) -> None:
    kind = catalog.get(event.type)
    if kind is None:
        raise InvalidEvent(f"type {event.type[:100]!r} is not in the catalog")
    if kind.internal:
        raise InvalidEvent(f"type {event.type!r} is made by Tidings itself and cannot be published")
    recipients = event.data.get("recipients")
    if recipients is not None:
        if not isinstance(recipients, list) or not all(isinstance(r, str) for r in recipients):
            raise InvalidEvent("data.recipients must be a list of user id strings")
        if len(recipients) > MAX_RECIPIENTS:
            raise InvalidEvent(f"data.recipients has {len(recipients)} entries, over {MAX_RECIPIENTS}")
        if not all(0 < len(r) <= MAX_ID_LENGTH for r in recipients):
            raise InvalidEvent(f"every user id in data.recipients must have 1 to {MAX_ID_LENGTH} characters")
    topic = event.data.get("topic")
    if topic is not None and (not isinstance(topic, str) or not 0 < len(topic) <= MAX_ID_LENGTH):
        raise InvalidEvent(f"data.topic must be a string of 1 to {MAX_ID_LENGTH} characters")
    if recipients is None and topic is None:
        raise InvalidEvent("data needs recipients (a list of user ids) or topic (a topic name)")
    url = event.data.get("url")
    if url is not None and (not isinstance(url, str) or not url.startswith(("https://", "http://"))):
        raise InvalidEvent("data.url must be an http(s) URL")
    if event.data.get("deliver_at") is not None:
        parse_time(event.data["deliver_at"], "data.deliver_at")
    cancel_key = event.data.get("cancel_key")
    if cancel_key is not None and (not isinstance(cancel_key, str) or not 0 < len(cancel_key) <= MAX_ID_LENGTH):
        raise InvalidEvent(f"data.cancel_key must be a string of 1 to {MAX_ID_LENGTH} characters")
    for key, check in DATA_CHECKS.get(event.type, {}).items():
        if event.data.get(key) is not None:
            check(event.data[key])
    missing = [key for key in kind.required if key not in event.data]
    if missing:
        raise InvalidEvent(f"data lacks the keys {event.type} requires: {', '.join(missing)}")
