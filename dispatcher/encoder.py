"""Lets the stock dramatiq worker consume producers' CloudEvents.

RabbitMQ hands the ingest queue plain CloudEvents JSON; dramatiq expects its
own message dicts. This encoder passes dramatiq's messages through and wraps
anything else into a message for the ``ingest`` actor, so a foreign body is
never dropped by the decoder: even an undecodable one reaches ``ingest``,
which rejects it with a reason and dead-letters it.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any

from dramatiq.encoder import JSONEncoder, MessageData

DRAMATIQ_KEYS = frozenset({"queue_name", "actor_name", "args", "kwargs", "options", "message_id"})
MESSAGE_FIELDS = DRAMATIQ_KEYS | {"message_timestamp"}
DRAMATIQ_TYPES = {"queue_name": str, "actor_name": str, "args": list, "kwargs": dict, "options": dict,
                  "message_id": str, "message_timestamp": int}
# Far deeper than any event; a body nested near the recursion limit parses here but fails to be stored.
MAX_NESTING = 64
# Our own messages wrap an event plus a little metadata; anything far larger is foreign.
WRAPPING_ALLOWANCE = 64 * 1024


class CloudEventEncoder(JSONEncoder):
    """JSON encoder that turns foreign bodies into ``ingest`` messages."""

    def __init__(self, *, ingest_queue: str, ingest_actor: str = "ingest", max_event_bytes: int) -> None:
        self.ingest_queue = ingest_queue
        self.ingest_actor = ingest_actor
        self.max_event_bytes = max_event_bytes

    def decode(self, data: bytes) -> MessageData:
        if len(data) > 2 * self.max_event_bytes + WRAPPING_ALLOWANCE:
            return self._wrap(data, error=self._too_large(data))
        try:
            # Decode explicitly: json.loads(bytes) would also accept UTF-16 and UTF-32.
            text = data.decode("utf-8")
            value = json.loads(text)
        except UnicodeDecodeError:
            return self._wrap(data, error="the body is not UTF-8")
        except (ValueError, RecursionError) as e:
            return self._wrap(data, error=f"the body is not JSON ({str(e)[:200]})")
        if _is_dramatiq_message(value):
            return value
        if len(data) > self.max_event_bytes:
            return self._wrap(data, error=self._too_large(data))
        if not isinstance(value, dict):
            return self._wrap(data, error=f"the body is JSON but not an object (got {type(value).__name__})")
        problem = _unstorable(value)
        if problem is not None:
            return self._wrap(data, error=problem)
        return self._wrap(data, event=value)

    def _too_large(self, data: bytes) -> str:
        return f"the body is {len(data)} bytes, over the limit of {self.max_event_bytes} (TIDINGS_MAX_EVENT_BYTES)"

    def _wrap(self, data: bytes, *, event: dict[str, Any] | None = None, error: str | None = None) -> MessageData:
        kwargs: dict[str, Any] = {"event": event} if error is None else {"error": error}
        return {
            "queue_name": self.ingest_queue,
            "actor_name": self.ingest_actor,
            "args": (),
            "kwargs": kwargs,
            "options": {},
            "message_id": self._message_id(data, event),
            "message_timestamp": int(time.time() * 1000),
        }

    @staticmethod
    def _message_id(data: bytes, event: dict[str, Any] | None) -> str:
        """Deterministic, so every redelivery of one event carries the same id."""
        if event is not None and isinstance(event.get("source"), str) and isinstance(event.get("id"), str):
            return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{event['source']}\x00{event['id']}"))
        return str(uuid.UUID(bytes=hashlib.sha256(data).digest()[:16], version=4))


def _is_dramatiq_message(value: object) -> bool:
    """A dict dramatiq can turn into a Message: its fields, each of its type (bool is no timestamp)."""
    return (isinstance(value, dict) and DRAMATIQ_KEYS <= value.keys() <= MESSAGE_FIELDS
            and all(isinstance(value[k], t) and not isinstance(value[k], bool)
                    for k, t in DRAMATIQ_TYPES.items() if k in value))


def _unstorable(value: object) -> str | None:
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
