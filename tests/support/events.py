"""CloudEvents as a producer writes them (plain dicts) and as parse_event returns them (CloudEvent), and the data of
the catalog's types that tests use most."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from dispatcher.core.events import CloudEvent

#: The invitation link the invites of the end-to-end tests carry.
INVITE_URL = "https://play.example/invites/1"


def cloud_event(type: str, data: Any, **attributes: Any) -> dict[str, Any]:
    """A structured-mode CloudEvents 1.0 event: a new UUID as its id and source /tests, unless ``attributes`` say
    otherwise; other attributes (time, subject...) come after type, and data last."""
    event: dict[str, Any] = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "/tests", "type": type}
    event.update(attributes)
    event["data"] = data
    return event


def parsed_event(
    type: str,
    data: dict[str, Any],
    *,
    id: str | None = None,
    source: str = "/tests",
    time: dt.datetime | None = None,
    subject: str | None = None,
) -> CloudEvent:
    """An event as parse_event returns it, for the code after the intake: a new UUID as its id and source /tests
    unless given; no time and no subject unless given."""
    return CloudEvent(
        id=str(uuid.uuid4()) if id is None else id, source=source, type=type, data=data, time=time, subject=subject
    )


def as_body(value: Any) -> bytes:
    """``value`` as JSON bytes, the body a producer publishes."""
    return json.dumps(value).encode()


def invite(recipients: Any = None, **fields: Any) -> dict[str, Any]:
    """The data of a team.invite.sent: Mira invites ``recipients`` (ana unless given) to Wolves; ``fields`` add
    keys or replace them. ``recipients`` goes in as it is, so that a test can send a wrong one."""
    return {
        "recipients": ["ana"] if recipients is None else recipients,
        "team_name": "Wolves",
        "inviter_name": "Mira",
        **fields,
    }
