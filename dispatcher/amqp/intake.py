"""What arrives from the events exchange, turned into messages for the ``ingest`` actor.

Producers publish plain CloudEvents; dramatiq expects its own message dicts.
The ingest queue's consumer (see broker.py) hands every body it receives to
:meth:`Intake.wrap`, whatever it looks like: a body shaped like a dramatiq
message is wrapped like any other, so nothing arriving through the exchange
can name an actor, a queue, options or an eta. Even an undecodable body
becomes an ``ingest`` message, which rejects it with a reason and dead-letters it.

The AMQP envelope travels with it: the routing key, the content type and the
``user_id`` property, which RabbitMQ itself checks against the connection's user.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import uuid
from typing import Any

from dramatiq.encoder import MessageData

from dispatcher.core.errors import InvalidEvent

#: Structured-mode CloudEvents over AMQP (the CloudEvents AMQP binding); binary mode is not supported.
CONTENT_TYPE = "application/cloudevents+json"
# Far deeper than any event; a body nested near the recursion limit parses here but fails to be stored.
MAX_NESTING = 64
#: Bodies up to this many times TIDINGS_MAX_EVENT_BYTES are parsed to log their id and source.
PARSE_FACTOR = 2
#: Header set by `tidings dlq replay` (as Tidings' own user): the user that first published the body.
ORIGINAL_PUBLISHER_HEADER = "tidings-original-publisher"
#: Keys of a dramatiq message: a body with them and no specversion was written to drive an actor.
DRAMATIQ_KEYS = frozenset({"queue_name", "actor_name", "args", "kwargs", "options", "message_id"})
MAX_SHOWN = 200


@dataclasses.dataclass(frozen=True)
class Envelope:
    """The AMQP facts about one body: how it was routed, labelled, and who published it.

    ``publisher`` is the RabbitMQ-validated ``user_id`` property (None: not set, anonymous).
    """

    routing_key: str | None = None
    content_type: str | None = None
    publisher: str | None = None

    @classmethod
    def from_amqp(cls, routing_key: str | None, properties: Any, *, relays: frozenset[str]) -> Envelope:
        """Read the envelope; a replay by a trusted relay (Tidings' own user) keeps the original publisher."""
        publisher = properties.user_id or None
        headers = properties.headers or {}
        if publisher in relays and ORIGINAL_PUBLISHER_HEADER in headers:
            original = headers[ORIGINAL_PUBLISHER_HEADER]
            original = original.decode("utf-8", "replace") if isinstance(original, bytes) else original
            publisher = original if isinstance(original, str) and original else None
        return cls(routing_key=routing_key, content_type=properties.content_type, publisher=publisher)

    def as_kwargs(self) -> dict[str, str | None]:
        return dataclasses.asdict(self)


def check_content_type(envelope: Envelope) -> None:
    """Structured mode only: the content type must be application/cloudevents+json (a charset may follow)."""
    media_type, _, parameters = (envelope.content_type or "").partition(";")
    charset = parameters.strip().lower()
    if media_type.strip().lower() != CONTENT_TYPE or charset not in ("", "charset=utf-8", 'charset="utf-8"'):
        shown = repr(envelope.content_type[:MAX_SHOWN]) if envelope.content_type else "none"
        raise InvalidEvent(
            f"the content type is {shown}: publish structured-mode CloudEvents with the AMQP "
            f"content_type {CONTENT_TYPE!r}"
        )


def check_routing_key(event_type: str, envelope: Envelope) -> None:
    """The routing key must equal the event's type, so RabbitMQ's topic permissions mean what they say."""
    if envelope.routing_key != event_type:
        shown = repr(envelope.routing_key[:MAX_SHOWN]) if envelope.routing_key is not None else "none"
        raise InvalidEvent(
            f"the routing key {shown} is not the event's type {event_type[:MAX_SHOWN]!r}: publish "
            "each event with routing key = type"
        )


class Intake:
    """Wraps foreign bodies into ``ingest`` messages with deterministic ids."""

    def __init__(self, *, ingest_queue: str, ingest_actor: str = "ingest", max_event_bytes: int) -> None:
        self.ingest_queue = ingest_queue
        self.ingest_actor = ingest_actor
        self.max_event_bytes = max_event_bytes

    def wrap(self, data: bytes, envelope: Envelope | None = None) -> MessageData:
        """An ingest message for ``data``: kwargs ``event`` (a JSON object) or ``error`` (why not), and
        ``envelope``; ``ids`` holds the id, type and source of a rejected body when they could be read."""
        value, error = self._parse(data)
        kwargs: dict[str, Any] = {"envelope": (envelope or Envelope()).as_kwargs()}
        if error is None:
            kwargs["event"] = value
        else:
            kwargs["error"] = error
            kwargs["ids"] = readable_ids(value)
        return {
            "queue_name": self.ingest_queue,
            "actor_name": self.ingest_actor,
            "args": (),
            "kwargs": kwargs,
            "options": {},
            "message_id": message_id(data, value if error is None else None),
            "message_timestamp": int(time.time() * 1000),
        }

    def _parse(self, data: bytes) -> tuple[object, str | None]:
        """The decoded body and None, or what could be read of it and why it is refused."""
        if len(data) > PARSE_FACTOR * self.max_event_bytes:
            return None, self._too_large(data)
        try:
            # Decode explicitly: json.loads(bytes) would also accept UTF-16 and UTF-32.
            value = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError:
            return None, "the body is not UTF-8"
        except (ValueError, RecursionError) as e:
            return None, f"the body is not JSON ({str(e)[:MAX_SHOWN]})"
        if len(data) > self.max_event_bytes:
            return value, self._too_large(data)
        if not isinstance(value, dict):
            return value, f"the body is JSON but not an object (got {type(value).__name__})"
        if "specversion" not in value and DRAMATIQ_KEYS & value.keys():
            keys = ", ".join(sorted(DRAMATIQ_KEYS & value.keys()))
            return value, (
                f"the body is shaped like a dramatiq message ({keys}): only CloudEvents enter "
                "through the events exchange"
            )
        return value, unstorable(value)

    def _too_large(self, data: bytes) -> str:
        return f"the body is {len(data)} bytes, over the limit of {self.max_event_bytes} (TIDINGS_MAX_EVENT_BYTES)"


def message_id(data: bytes, event: object = None) -> str:
    """Deterministic, so every redelivery of one event carries the same id: uuid5 of (source, id)."""
    if isinstance(event, dict) and isinstance(event.get("source"), str) and isinstance(event.get("id"), str):
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{event['source']}\x00{event['id']}"))
    return str(uuid.UUID(bytes=hashlib.sha256(data).digest()[:16], version=4))


def readable_ids(value: object) -> dict[str, str]:
    """The id, type and source a refused body carries, when it is an object holding them as strings."""
    if not isinstance(value, dict):
        return {}
    return {key: _printable(value[key]) for key in ("id", "type", "source") if isinstance(value.get(key), str)}


def _printable(text: str) -> str:
    """At most MAX_SHOWN characters, with NUL and lone surrogates replaced: safe to log and store."""
    return text[:MAX_SHOWN].replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def unstorable(value: object) -> str | None:
    """Why valid JSON cannot be stored as it is (too deep, NUL, a lone surrogate), or None. Not recursive."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_NESTING:
                return f"the body nests arrays and objects deeper than {MAX_NESTING} levels"
            stack.extend((child, depth + 1) for child in ([*item, *item.values()] if isinstance(item, dict) else item))
        elif isinstance(item, str):
            if "\x00" in item:  # PostgreSQL text cannot hold it
                return "the body has a NUL character (\\u0000) in a string"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:  # "\ud800" is valid JSON but no character
                return "the body has a lone UTF-16 surrogate escape (\\ud800-\\udfff)"
    return None
