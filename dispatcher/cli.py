"""The ``tidings`` command: schema, publishing, users, preferences, topics, inboxes, deliveries.

Control commands given here go through the same code as those arriving on the
exchange (a CloudEvent applied once), so the two can never disagree.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import clock
from .catalog import PREFERENCE_CHANNELS, Catalog, load_catalog
from .db import init_database
from .errors import ConfigError, TidingsError
from .endpoints import new_secret
from .events import CloudEvent, decode_body, parse_event, parse_time
from .ingest import ingest_event
from .migrate import migrate
from .models import Delivery, DeliveryStatus, Event, InboxItem, Preference, Subscription, User, WebhookEndpoint
from .preferences import WILDCARD, load_preferences, resolve_channels
from .publisher import Publisher, build_event
from .logs import configure_logging
from .settings import Settings, get_settings

CLI_SOURCE = "/tidings/cli"


class Context:
    """What every command needs: settings, the catalog, and the database."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.catalog: Catalog = load_catalog(settings.catalog_path, settings.templates_dir)
        self._database_ready = False

    def database(self) -> None:
        if not self._database_ready:
            init_database(self.settings.database_url)
            migrate()
            self._database_ready = True

    def command(self, type_name: str, data: dict[str, Any]) -> str:
        """Apply a control command locally, exactly as the worker would."""
        self.database()
        now = clock.now().replace(tzinfo=dt.timezone.utc)
        event = CloudEvent(id=str(uuid.uuid4()), source=CLI_SOURCE, type=type_name, data=data, time=now)
        return ingest_event(event, self.catalog, []).outcome


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def _print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip())
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())


# --- commands ---------------------------------------------------------------


def cmd_migrate(ctx: Context, args: argparse.Namespace) -> int:
    init_database(ctx.settings.database_url)
    before, after = migrate()
    print(f"schema at version {after}" + (f" (was {before})" if before != after else " (up to date)"))
    return 0


def cmd_run(ctx: Context, args: argparse.Namespace) -> int:
    from .supervisor import read_procfile, run

    procfile = Path(args.procfile)
    try:
        names = read_procfile(procfile)
    except (OSError, ValueError) as e:
        raise TidingsError(f"cannot read the Procfile: {e}") from None
    unknown = set(args.only or []) - set(names)
    if unknown:
        raise TidingsError(f"no such process in {procfile}: {', '.join(sorted(unknown))}")
    init_database(ctx.settings.database_url)
    migrate()
    return run(procfile, only=args.only)


def cmd_schema(ctx: Context, args: argparse.Namespace) -> int:
    from .schema import event_schema

    print(json.dumps(event_schema(ctx.catalog), indent=2))
    return 0


def cmd_publish(ctx: Context, args: argparse.Namespace) -> int:
    if args.file:
        raw = decode_body(Path(args.file).read_bytes())
    else:
        if not args.type:
            raise TidingsError("give a TYPE and --data, or --file EVENT.json")
        data = decode_body(args.data) if args.data else {}
        raw = build_event(args.type, data, source=args.source, id=args.id)
    event = parse_event(raw, ctx.catalog)  # refuse locally what the worker would dead-letter
    with Publisher(ctx.settings.broker_url, ctx.settings.exchange) as publisher:
        publisher.publish(raw)
    print(f"published {event.type} id={event.id} source={event.source}")
    return 0


def cmd_users_upsert(ctx: Context, args: argparse.Namespace) -> int:
    data: dict[str, Any] = {"id": args.id}
    for field in ("email", "name", "timezone", "locale", "discord_webhook_url"):
        value = getattr(args, field)
        if value is not None:
            data[field] = None if value == "" else value
    print(ctx.command("tidings.user.upsert", data))
    return 0


def _user_row(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "timezone": user.timezone,
        "locale": user.locale,
        "discord_webhook": "set" if user.discord_webhook_url else None,  # it embeds a token
    }


def cmd_users_list(ctx: Context, args: argparse.Namespace) -> int:
    ctx.database()
    rows = [_user_row(u) for u in User.select().order_by(User.id)]
    _print_json(rows) if args.json else _print_table(rows, ["id", "email", "name", "timezone", "locale"])
    return 0


def cmd_prefs_set(ctx: Context, args: argparse.Namespace) -> int:
    item = {"type": args.type, "channel": args.channel, "enabled": args.state == "on"}
    print(ctx.command("tidings.preferences.set", {"user": args.user, "preferences": [item]}))
    return 0


def cmd_prefs_show(ctx: Context, args: argparse.Namespace) -> int:
    """The resolved channels per type, and the settings stored for the user."""
    ctx.database()
    rows = []
    for name in ctx.catalog.names():
        kind = ctx.catalog.types[name]
        preferences = load_preferences([args.user], name).get(args.user, {})
        chosen = resolve_channels(kind, preferences, PREFERENCE_CHANNELS)
        rows.append({"type": name, "channels": ",".join(chosen), "critical": "yes" if kind.critical else ""})
    stored = [
        {"type": p.type, "channel": p.channel, "enabled": p.enabled}
        for p in Preference.select().where(Preference.user_id == args.user).order_by(Preference.type, Preference.channel)
    ]
    if args.json:
        _print_json({"user": args.user, "resolved": rows, "stored": stored})
        return 0
    _print_table(rows, ["type", "channels", "critical"])
    print(f"\nstored settings ({WILDCARD!r} applies to every type):")
    _print_table(stored, ["type", "channel", "enabled"])
    return 0


def cmd_topics_change(ctx: Context, args: argparse.Namespace) -> int:
    print(ctx.command(f"tidings.topic.{args.action}", {"topic": args.topic, "user": args.user}))
    return 0


def cmd_topics_list(ctx: Context, args: argparse.Namespace) -> int:
    ctx.database()
    query = Subscription.select().where(Subscription.active == True)  # noqa: E712 - peewee expression
    if args.topic:
        query = query.where(Subscription.topic == args.topic)
    rows = [{"topic": s.topic, "user": s.user_id} for s in query.order_by(Subscription.topic, Subscription.user_id)]
    _print_json(rows) if args.json else _print_table(rows, ["topic", "user"])
    return 0


def _inbox_row(item: InboxItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "type": item.type,
        "title": item.title,
        "body": item.body,
        "url": item.url,
        "data": item.data,
        "created_at": item.created_at.isoformat() + "Z",
        "read_at": item.read_at.isoformat() + "Z" if item.read_at else None,
    }


def cmd_inbox_list(ctx: Context, args: argparse.Namespace) -> int:
    ctx.database()
    query = InboxItem.select().where(InboxItem.user_id == args.user)
    if args.unread:
        query = query.where(InboxItem.read_at.is_null())
    rows = [_inbox_row(i) for i in query.order_by(InboxItem.created_at.desc(), InboxItem.id.desc()).limit(args.limit)]
    if args.json:
        _print_json(rows)
    else:
        _print_table([{**r, "read": "yes" if r["read_at"] else ""} for r in rows], ["id", "created_at", "type", "title", "read"])
    return 0


def cmd_inbox_mark_read(ctx: Context, args: argparse.Namespace) -> int:
    if not args.ids and not args.all:
        raise TidingsError("name the notification ids to mark, or --all")
    ctx.database()
    query = InboxItem.update(read_at=clock.now()).where(InboxItem.user_id == args.user, InboxItem.read_at.is_null())
    if not args.all:
        query = query.where(InboxItem.id.in_(args.ids))
    print(f"marked {query.execute()} read")
    return 0


def cmd_deliveries(ctx: Context, args: argparse.Namespace) -> int:
    ctx.database()
    query = Event.select().where(Event.event_id == args.event_id)
    if args.source:
        query = query.where(Event.source == args.source)
    events = list(query)
    if not events:
        raise TidingsError(f"no event with id {args.event_id!r}" + (f" from {args.source!r}" if args.source else ""))
    if len(events) > 1:
        sources = ", ".join(e.source for e in events)
        raise TidingsError(f"several events have id {args.event_id!r}; pick one with --source ({sources})")
    event = events[0]
    rows = [
        {
            "id": d.id,
            "user": d.user_id,
            "channel": d.channel,
            "status": d.status,
            "attempts": d.attempts,
            "last_error": d.last_error,
            "created_at": d.created_at.isoformat() + "Z",
            "sent_at": d.sent_at.isoformat() + "Z" if d.sent_at else None,
        }
        for d in Delivery.select().where(Delivery.event == event).order_by(Delivery.user_id, Delivery.channel)
    ]
    if args.json:
        _print_json({"event": {"id": event.event_id, "source": event.source, "type": event.type}, "deliveries": rows})
    else:
        print(f"{event.type} id={event.event_id} source={event.source}")
        _print_table(rows, ["id", "user", "channel", "status", "attempts", "sent_at", "last_error"])
    return 0


def cmd_webhooks_add(ctx: Context, args: argparse.Namespace) -> int:
    secret = args.secret or new_secret()
    data = {"id": args.id, "url": args.url, "secret": secret, "types": args.types, "enabled": True,
            "owner": args.owner}
    print(ctx.command("tidings.webhook.upsert", data))
    if not args.secret:
        print(f"secret: {secret}  (give it to the receiver now; it is not shown again)")
    return 0


def _endpoint(ctx: Context, endpoint_id: str) -> WebhookEndpoint:
    ctx.database()
    endpoint = WebhookEndpoint.get_or_none(WebhookEndpoint.id == endpoint_id)
    if endpoint is None:
        raise TidingsError(f"no webhook endpoint {endpoint_id!r}")
    return endpoint


def cmd_webhooks_list(ctx: Context, args: argparse.Namespace) -> int:
    from channels.http import redact_url

    ctx.database()
    now = clock.now()
    rows = []
    for e in WebhookEndpoint.select().order_by(WebhookEndpoint.id):
        rotating = bool(e.previous_secret and e.rotated_at
                        and now < e.rotated_at + dt.timedelta(seconds=ctx.settings.secret_rotation_overlap))
        rows.append({"id": e.id, "url": redact_url(e.url), "types": e.types, "enabled": e.enabled,
                     "disabled_reason": e.disabled_reason, "owner": e.owner,
                     "failing_since": e.failing_since.isoformat() + "Z" if e.failing_since else None,
                     "rotating_secret": rotating})
    if args.json:
        _print_json(rows)
    else:
        _print_table([{**r, "types": ",".join(r["types"])} for r in rows],
                     ["id", "url", "types", "enabled", "owner", "disabled_reason"])
    return 0


def cmd_webhooks_enable(ctx: Context, args: argparse.Namespace) -> int:
    _endpoint(ctx, args.id)
    print(ctx.command("tidings.webhook.upsert", {"id": args.id, "enabled": args.action == "enable"}))
    return 0


def cmd_webhooks_rotate(ctx: Context, args: argparse.Namespace) -> int:
    _endpoint(ctx, args.id)
    secret = new_secret()
    print(ctx.command("tidings.webhook.upsert", {"id": args.id, "secret": secret}))
    hours = ctx.settings.secret_rotation_overlap / 3600
    print(f"secret: {secret}  (the old secret also signs for {hours:g} h: give the new one to the receiver)")
    return 0


def cmd_webhooks_replay(ctx: Context, args: argparse.Namespace) -> int:
    """Send again, with their original webhook-id: one event's webhooks, or every failed one since a time."""
    ctx.database()
    query = Delivery.select(Delivery.id).join(Event).where(Delivery.channel == "webhook")
    if args.event_id:
        query = query.where(Event.event_id == args.event_id)
        if args.source:
            query = query.where(Event.source == args.source)
    elif args.since:
        since = clock.to_utc_naive(parse_time(args.since, "--since"))
        query = query.where(Delivery.status == DeliveryStatus.FAILED, Delivery.updated_at >= since)
    else:
        raise TidingsError("name an EVENT_ID, or --since TIME for every failed webhook since then")
    if args.endpoint:
        query = query.where(Delivery.user_id == args.endpoint)
    ids = [delivery_id for (delivery_id,) in query.tuples()]
    now = clock.now()
    replayed = Delivery.update(status=DeliveryStatus.PENDING, attempts=0, held=True, next_attempt_at=now,
                               last_error=None, claimed_by=None, updated_at=now).where(
        Delivery.id.in_(ids), Delivery.status != DeliveryStatus.SENDING).execute() if ids else 0
    print(f"replaying {replayed} webhook deliveries (the scheduler sends them within a minute)")
    return 0


# --- parser -----------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tidings", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(parent: Any, name: str, func: Callable[..., int], help: str) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    command(sub, "migrate", cmd_migrate, "create or upgrade the database schema")

    p = command(sub, "run", cmd_run, "run the Procfile's processes (worker, scheduler), restarting any that dies")
    p.add_argument("--procfile", default=str(Path(__file__).resolve().parent.parent / "Procfile"))
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these Procfile processes")

    command(sub, "schema", cmd_schema, "print the JSON Schema of an event (docs/cloudevent.schema.json)")

    p = command(sub, "publish", cmd_publish, "publish a CloudEvent to the exchange")
    p.add_argument("type", nargs="?", help="the event type, e.g. team.invite.sent")
    p.add_argument("--data", help="the event's data as a JSON object")
    p.add_argument("--source", default=CLI_SOURCE, help=f"the event source (default {CLI_SOURCE})")
    p.add_argument("--id", help="the event id (default: a new UUID)")
    p.add_argument("--file", help="publish this CloudEvent JSON file as it is")

    users = sub.add_parser("users", help="users").add_subparsers(dest="action", required=True)
    p = command(users, "upsert", cmd_users_upsert, "create or update a user ('' clears a field)")
    p.add_argument("id")
    for field in ("email", "name", "timezone", "locale"):
        p.add_argument(f"--{field}")
    p.add_argument("--discord-webhook-url", dest="discord_webhook_url")
    p = command(users, "list", cmd_users_list, "list users")
    p.add_argument("--json", action="store_true")

    prefs = sub.add_parser("prefs", help="notification preferences").add_subparsers(dest="action", required=True)
    p = command(prefs, "set", cmd_prefs_set, "turn a channel on or off for a type, or '*' for all types")
    p.add_argument("user")
    p.add_argument("type", help="a catalog type, or '*'")
    p.add_argument("channel", choices=PREFERENCE_CHANNELS)
    p.add_argument("state", choices=("on", "off"))
    p = command(prefs, "show", cmd_prefs_show, "show a user's resolved channels per type")
    p.add_argument("user")
    p.add_argument("--json", action="store_true")

    topics = sub.add_parser("topics", help="topic subscriptions").add_subparsers(dest="action", required=True)
    for action in ("subscribe", "unsubscribe"):
        p = command(topics, action, cmd_topics_change, f"{action} a user to a topic")
        p.add_argument("topic")
        p.add_argument("user")
        p.set_defaults(action=action)
    p = command(topics, "list", cmd_topics_list, "list subscriptions")
    p.add_argument("topic", nargs="?")
    p.add_argument("--json", action="store_true")

    inbox = sub.add_parser("inbox", help="in-app notifications").add_subparsers(dest="action", required=True)
    p = command(inbox, "list", cmd_inbox_list, "list a user's in-app notifications, newest first")
    p.add_argument("user")
    p.add_argument("--unread", action="store_true", help="only unread ones")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p = command(inbox, "mark-read", cmd_inbox_mark_read, "mark notifications read")
    p.add_argument("user")
    p.add_argument("ids", nargs="*", type=int)
    p.add_argument("--all", action="store_true")

    hooks = sub.add_parser("webhooks", help="signed webhook endpoints").add_subparsers(dest="action", required=True)
    p = command(hooks, "add", cmd_webhooks_add, "register (or change) an endpoint")
    p.add_argument("id")
    p.add_argument("url", help="https:// URL of the receiver")
    p.add_argument("--types", nargs="+", required=True, metavar="PATTERN", help="glob patterns, e.g. 'match.*'")
    p.add_argument("--secret", help="whsec_… (default: a new random one, printed once)")
    p.add_argument("--owner", help="the user told when the endpoint gets disabled")
    p = command(hooks, "list", cmd_webhooks_list, "list endpoints (URLs shortened, secrets never shown)")
    p.add_argument("--json", action="store_true")
    for action in ("enable", "disable"):
        p = command(hooks, action, cmd_webhooks_enable, f"{action} an endpoint")
        p.add_argument("id")
        p.set_defaults(action=action)
    p = command(hooks, "rotate-secret", cmd_webhooks_rotate, "give an endpoint a new secret; the old one "
                "keeps signing for TIDINGS_SECRET_ROTATION_OVERLAP")
    p.add_argument("id")
    p = command(hooks, "replay", cmd_webhooks_replay, "send webhooks again with their original webhook-id")
    p.add_argument("event_id", nargs="?", help="replay this event's webhooks")
    p.add_argument("--source", help="the event's source, when several events share the id")
    p.add_argument("--since", help="replay every failed webhook delivery since this RFC 3339 time")
    p.add_argument("--endpoint", help="only to this endpoint")

    p = command(sub, "deliveries", cmd_deliveries, "show the deliveries of one event")
    p.add_argument("event_id")
    p.add_argument("--source", help="the event's source, when several events share the id")
    p.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None, *, settings: Settings | None = None) -> int:
    """Run one command; exit status 0 on success, 1 on an error, 2 on bad usage or configuration."""
    args = build_parser().parse_args(argv)
    try:
        ctx = Context(settings or get_settings())
    except ConfigError as e:
        print(f"tidings: configuration error: {e}", file=sys.stderr)
        return 2
    configure_logging(ctx.settings.log_format, ctx.settings.log_level)
    try:
        return args.func(ctx, args)
    except TidingsError as e:
        print(f"tidings: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
