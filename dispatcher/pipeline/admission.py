"""Admission: every check an event from the bus passes before ingest, in one place.

The envelope (content type, routing key), the contract (parse_event), its times
(clock skew, schedule horizon) and its publisher's authority. Any failure is an
InvalidEvent whose message is the reason the event is dead-lettered with.
"""

from __future__ import annotations

from dispatcher.amqp.intake import Envelope, check_content_type, check_routing_key
from dispatcher.core.authority import Authority, Sender
from dispatcher.core.catalog import Catalog
from dispatcher.core.errors import InvalidEvent
from dispatcher.core.events import CloudEvent, parse_event
from dispatcher.core.settings import Settings
from dispatcher.core.timing import check_schedule, check_time


def admit(
    event: object, envelope: Envelope, *, catalog: Catalog, settings: Settings, authority: Authority
) -> tuple[CloudEvent, Sender]:
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
