"""What the routers that change users, topics and webhooks share: a control command applied now,
through the same code as the `tidings` CLI, and a URL's egress check before it is stored.

A command from an API key applies as the CLI's does (an operator's authority: it applies whatever
time a stored record claims) and is recorded in the events table like any command, its source
``/tidings/api`` and its publisher ``api:<the key's name>``, as POST /v1/events names it. A refused
command is a 422 naming the field its reason starts with, and giving the reason as the command gave it.
A placement override goes through the rankings' ingest hooks, as the worker applies it: its standings
are recomputed in its transaction, and the rank changes it causes are announced once it has committed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from fastapi.exceptions import RequestValidationError

from channels.egress import Address, address_allowed, describe
from dispatcher.core import clock
from dispatcher.core.api_keys import ApiKey
from dispatcher.core.authority import Sender
from dispatcher.core.catalog import Catalog
from dispatcher.core.errors import InvalidCommand, InvalidEvent
from dispatcher.core.events import CloudEvent
from dispatcher.core.settings import Settings
from dispatcher.pipeline.ingest import ingest_event, publish_announcements
from dispatcher.rankings.notices import INGEST_HOOKS
from dispatcher.storage.db import database, transaction

API_SOURCE = "/tidings/api"


def sender(key: ApiKey) -> Sender:
    """The CLI's authority (an operator's), with the key's name kept as the command's publisher."""
    return Sender(publisher=f"api:{key.name}", privileged=True, operator=True)


def apply_now(catalog: Catalog, key: ApiKey, type_name: str, data: dict[str, Any]) -> str:
    """Apply one control command now, as `tidings` does; "applied" (or "stale"). Raises InvalidEvent."""
    return ingest_event(_command(type_name, data), catalog, [], sender=sender(key)).outcome


def apply_now_and_announce(
    catalog: Catalog, settings: Settings, key: ApiKey, type_name: str, data: dict[str, Any]
) -> str:
    """Apply one control command now with the rankings' ingest hooks, in a write transaction of its own, then
    publish what they announce (a placement override's ``ranking.changed`` events) once it has committed.

    "applied", "unchanged" or "stale". Raises InvalidEvent. A publish that fails is logged, and left to the
    daily rankings job, which announces it again (pipeline.ingest.publish_announcements).
    """
    with write_session():
        result = ingest_event(_command(type_name, data), catalog, [], sender=sender(key), hooks=INGEST_HOOKS)
    publish_announcements(result, settings)
    return result.outcome


def _command(type_name: str, data: dict[str, Any]) -> CloudEvent:
    now = clock.now().replace(tzinfo=dt.UTC)
    return CloudEvent(id=str(uuid.uuid4()), source=API_SOURCE, type=type_name, data=data, time=now)


@contextlib.contextmanager
def write_session() -> Iterator[None]:
    """database.session() for a handler that reads before it writes: one transaction that, on SQLite,
    takes the write lock up front (storage.db.transaction), or a concurrent writer makes it fail."""
    with database.connection_context(), transaction():
        yield


def unprocessable(
    error: InvalidEvent,
    body: Iterable[str] = (),
    path: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
) -> RequestValidationError:
    """The 422 of a refused command: its reason, under the field it names first (after the command's own
    name, which some reasons start with: "tidings.standings.override: rank must be ...").

    ``body`` are the body's fields; ``path`` and ``query`` map a name the command uses to the path or
    query parameter it came from (``{"user": "user_id"}``). A reason naming none of them is the body's.
    """
    reason = str(error)
    words = reason.split(" ")
    if len(words) > 1 and words[0].startswith("tidings.") and words[0].endswith(":"):
        words = words[1:]
    first = words[0].rstrip(":,").removeprefix("data.")
    location: tuple[str, ...] = ("body",)
    if path and first in path:
        location = ("path", path[first])
    elif query and first in query:
        location = ("query", query[first])
    elif first in set(body):
        location = ("body", first)
    return RequestValidationError([{"loc": location, "msg": reason, "type": "value_error"}])


def check_egress(field: str, url: str, settings: Settings) -> None:
    """Refuse a URL whose host is, or resolves only to, addresses Tidings may not connect to.

    The same judgement as the connection's (channels/egress.py, with TIDINGS_ALLOW_PRIVATE_NETWORKS),
    made early so that the caller hears it now rather than from a failed delivery. The connection
    checks again: a name may resolve elsewhere later. A name that does not resolve now is let through.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return  # not a URL: the command's own check says so
    if not host:
        return
    literal, addresses = _addresses(host, port or 443)
    allowed = settings.allow_private_networks
    if addresses and not any(address_allowed(address, allowed) for address in addresses):
        listed = ", ".join(describe(address) for address in dict.fromkeys(addresses))
        leads_to = listed if literal else f"{host}, which resolves only to {listed}"
        raise InvalidCommand(
            f"{field} leads to {leads_to}; Tidings connects only to public addresses "
            "unless TIDINGS_ALLOW_PRIVATE_NETWORKS includes the range"
        )


def _addresses(host: str, port: int) -> tuple[bool, list[Address]]:
    """Whether ``host`` is an address itself, and the addresses it stands for (none: it does not resolve)."""
    try:
        return True, [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        resolved = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return False, []
    return False, [ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]) for *_, sockaddr in resolved]
