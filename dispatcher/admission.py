"""Admission: every check an event from the bus passes before ingest, in one place.

The envelope (content type, routing key), the contract (parse_event), its times
(clock skew, schedule horizon) and its publisher's authority. Any failure is an
InvalidEvent whose message is the reason the event is dead-lettered with.
"""

from __future__ import annotations

from .authority import Authority, Sender
from .catalog import Catalog
from .errors import InvalidEvent
from .events import CloudEvent, parse_event
from .intake import Envelope, check_content_type, check_routing_key
from .scheduling import check_schedule, check_time
from .settings import Settings


def admit(event: object, envelope: Envelope, *, catalog: Catalog, settings: Settings,
          authority: Authority) -> tuple[CloudEvent, Sender]:
    """The checked event and who sent it, or InvalidEvent naming the first check it failed."""
    check_content_type(envelope)
    if not isinstance(event, dict):
        raise InvalidEvent("the body is not a JSON object")
    checked = parse_event(event, catalog)
    check_routing_key(checked.type, envelope)
    check_time(checked, settings.max_clock_skew)
    check_schedule(checked, settings.schedule_horizon)
    sender = authority.sender(envelope.publisher)
    authority.check(checked, sender, catalog)
    return checked, sender
