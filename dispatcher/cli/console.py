"""What every `tidings` command shares: settings, the catalog, the database, and output."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from typing import Any

import pika.exceptions

from channels import channel_classes, check_switches
from dispatcher.core import clock
from dispatcher.core.authority import OPERATOR
from dispatcher.core.catalog import Catalog, load_catalog
from dispatcher.core.errors import TidingsError
from dispatcher.core.events import CloudEvent
from dispatcher.core.settings import Settings, redact_url
from dispatcher.pipeline.ingest import ingest_event, publish_announcements
from dispatcher.rankings.notices import INGEST_HOOKS
from dispatcher.storage.db import init_database
from dispatcher.storage.migrate import migrate
from dispatcher.storage.models import Delivery, InboxItem, Preference, Subscription, User

CLI_SOURCE = "/tidings/cli"


class Context:
    """What every command needs: settings, the catalog, and the database."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        check_switches(settings)
        self.catalog: Catalog = load_catalog(settings.catalog_path, settings.templates_dir, channels=channel_classes())
        self._database_ready = False

    def database(self) -> None:
        if not self._database_ready:
            init_database(self.settings.database_url)
            migrate()
            self._database_ready = True

    def command(self, type_name: str, data: dict[str, Any]) -> str:
        """Apply a control command locally through the worker's code, with an operator's authority:
        it always applies, whatever time a stored record claims. What it announces (the rank changes
        of a placement override) is published to the exchange once it has committed."""
        self.database()
        now = clock.now().replace(tzinfo=dt.UTC)
        event = CloudEvent(id=str(uuid.uuid4()), source=CLI_SOURCE, type=type_name, data=data, time=now)
        result = ingest_event(event, self.catalog, [], sender=OPERATOR, hooks=INGEST_HOOKS)
        publish_announcements(result, self.settings)
        return result.outcome


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def user_known(user_id: str) -> bool:
    """Whether Tidings has anything of ``user_id``: a user row (tidings.user.upsert), or a recipient's
    notifications, deliveries, preferences or subscriptions (a recipient needs no user row)."""
    return any(
        query.exists()
        for query in (
            User.select().where(User.id == user_id),
            InboxItem.select().where(InboxItem.user_id == user_id),
            Preference.select().where(Preference.user_id == user_id),
            Subscription.select().where(Subscription.user_id == user_id),
            Delivery.select().where(Delivery.user_id == user_id),
        )
    )


def require_user(ctx: Context, user_id: str, *, create: str | None = None) -> None:
    """TidingsError unless ``user_id`` is known; ``create`` names the option that allows a new one."""
    ctx.database()
    if not user_known(user_id):
        hint = f"; {create} goes ahead anyway" if create else ""
        raise TidingsError(f"no user {user_id!r}: no tidings.user.upsert, nothing sent to them{hint}")


#: pika's errors while opening a connection (a connection that was open and closed is another matter).
_OPENING_ERRORS = (
    pika.exceptions.ProbableAuthenticationError,
    pika.exceptions.ProbableAccessDeniedError,
    pika.exceptions.IncompatibleProtocolError,
)


def explain(error: TidingsError, settings: Settings) -> str:
    """The one line an error is told in; a connection RabbitMQ could not open names the URL and the cause."""
    cause = error.__cause__
    if type(cause) is pika.exceptions.AMQPConnectionError or isinstance(cause, _OPENING_ERRORS):
        return f"cannot reach RabbitMQ at {redact_url(settings.broker_url)}: {innermost(cause)}"
    return str(error)


def innermost(error: BaseException) -> str:
    """What an exception wraps, deepest first: 'ConnectionRefusedError: [Errno 111] Connection refused'."""
    seen = {id(error)}
    while True:
        # pika's connector errors keep the socket's error in .exception, urllib3's in .reason
        wrapped = (getattr(error, "exception", None), getattr(error, "reason", None), *error.args[:1], error.__cause__)
        inner = next((e for e in wrapped if isinstance(e, BaseException) and id(e) not in seen), None)
        if inner is None:
            break
        seen.add(id(inner))
        error = inner
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
