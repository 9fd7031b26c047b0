"""Bodies more than one router returns: an inbox item, as the list, the state changes and the stream send it."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer, field_serializer

from dispatcher.storage.models import InboxItem


class Notification(BaseModel):
    """One in-app notification of the caller's inbox. Times are RFC 3339 UTC; a state's time is null until then."""

    model_config = ConfigDict(extra="forbid")

    id: int
    type: str
    title: str
    body: str
    url: str | None
    data: dict[str, Any]
    created_at: dt.datetime
    seen_at: dt.datetime | None
    read_at: dt.datetime | None
    archived_at: dt.datetime | None

    @field_serializer("created_at", "seen_at", "read_at", "archived_at")
    def _utc(self, value: dt.datetime | None) -> str | None:
        return rfc3339(value)


def rfc3339(value: dt.datetime | None) -> str | None:
    """A stored (naive UTC) time as RFC 3339 with a Z, to the millisecond."""
    if value is None:
        return None
    return value.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


#: A stored (naive UTC) time, given as RFC 3339 with a Z (:func:`rfc3339`): a field type instead of a
#: field_serializer per model.
UtcTime = Annotated[dt.datetime, PlainSerializer(rfc3339, return_type=str)]


def notification(row: InboxItem) -> Notification:
    """The API's view of an inbox row."""
    return Notification(
        id=row.id,
        type=row.type,
        title=row.title,
        body=row.body,
        url=row.url,
        data=row.data if isinstance(row.data, dict) else {},
        created_at=row.created_at,
        seen_at=row.seen_at,
        read_at=row.read_at,
        archived_at=row.archived_at,
    )
