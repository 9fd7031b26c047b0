"""The ``tidings`` command: schema, publishing, users, preferences, topics, inboxes, deliveries.

Control commands given here go through the same code as those arriving on the
exchange (a CloudEvent applied once), so the two can never disagree.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from channels import channel_names
from dispatcher.amqp.publisher import Publisher, build_event
from dispatcher.api.auth import mint_user_token
from dispatcher.api.openapi import openapi_text
from dispatcher.api.schemas import notification
from dispatcher.cli import dlq as cli_dlq
from dispatcher.cli import rankings as cli_rankings
from dispatcher.cli import schedule as cli_schedule
from dispatcher.cli import webhooks as cli_webhooks
from dispatcher.cli.console import CLI_SOURCE, Context, print_json, print_table
from dispatcher.commands import inbox
from dispatcher.core import clock
from dispatcher.core.catalog import WILDCARD
from dispatcher.core.errors import ConfigError, TidingsError
from dispatcher.core.events import decode_body, format_time, parse_event
from dispatcher.core.logs import configure_logging
from dispatcher.core.settings import PROJECT_ROOT, Settings, get_settings
from dispatcher.core.timing import check_schedule
from dispatcher.pipeline.routing import plan_deliveries
from dispatcher.storage.db import init_database
from dispatcher.storage.deliveries import event_deliveries, find_event
from dispatcher.storage.migrate import migrate
from dispatcher.storage.models import DeliveryStatus, Preference, Subscription, User

# --- commands ---------------------------------------------------------------


def cmd_migrate(ctx: Context, args: argparse.Namespace) -> int:
    init_database(ctx.settings.database_url)
    before, after = migrate()
    print(f"schema at version {after}" + (f" (was {before})" if before != after else " (up to date)"))
    return 0


def cmd_run(ctx: Context, args: argparse.Namespace) -> int:
    from dispatcher.ops.supervisor import read_procfile, run

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
    from dispatcher.ops.schema import event_schema

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
    check_schedule(event, ctx.settings.schedule_horizon)
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
    print_json(rows) if args.json else print_table(rows, ["id", "email", "name", "timezone", "locale"])
    return 0


def cmd_prefs_set(ctx: Context, args: argparse.Namespace) -> int:
    item = {"type": args.type, "channel": args.channel, "enabled": args.state == "on"}
    print(ctx.command("tidings.preferences.set", {"user": args.user, "preferences": [item]}))
    return 0


def cmd_prefs_show(ctx: Context, args: argparse.Namespace) -> int:
    """What routing decides for the user now, per type and channel, and the settings stored for them."""
    ctx.database()
    now = clock.now()
    channels = channel_names(addresses="user")
    rows: list[dict[str, Any]] = []
    for name in ctx.catalog.names():
        kind = ctx.catalog.types[name]
        planned = {p.channel: p for p in plan_deliveries(kind, [args.user], channels, now=now)}
        routes: dict[str, dict[str, Any]] = {}
        for channel in channels:
            p = planned.get(channel)
            routes[channel] = {
                "enabled": p is not None,
                "mode": None if p is None else "digest" if p.status == DeliveryStatus.DIGEST else "immediate",
                "locked": p is not None and p.locked,
                "quiet_until": format_time(p.due.replace(tzinfo=dt.UTC)) if p is not None and p.quiet else None,
            }
        rows.append({"type": name, "critical": kind.critical, "channels": routes})
    stored = [
        {"type": p.type, "channel": p.channel, "enabled": p.enabled, "mode": p.mode}
        for p in Preference.select()
        .where(Preference.user_id == args.user)
        .order_by(Preference.type, Preference.channel)
    ]
    at = format_time(now.replace(tzinfo=dt.UTC))
    if args.json:
        print_json({"user": args.user, "at": at, "resolved": rows, "stored": stored})
        return 0
    print(f"what {args.user} gets now ({at}):")
    print_table(
        [{"type": row["type"], **{c: _route_cell(r) for c, r in row["channels"].items()}} for row in rows],
        ["type", *channels],
    )
    print("(locked: a critical type's default channel, which preferences cannot switch off)")
    print(f"\nstored settings ({WILDCARD!r} applies to every type):")
    print_table(stored, ["type", "channel", "enabled", "mode"])
    return 0


def _route_cell(route: dict[str, Any]) -> str:
    """'off', 'on' or 'digest', with ', locked' and ', held by quiet hours until <time>' when they apply."""
    text = ("digest" if route["mode"] == "digest" else "on") if route["enabled"] else "off"
    if route["locked"]:
        text += ", locked"
    if route["quiet_until"]:
        text += f", held by quiet hours until {route['quiet_until']}"
    return text


def cmd_topics_change(ctx: Context, args: argparse.Namespace) -> int:
    print(ctx.command(f"tidings.topic.{args.action}", {"topic": args.topic, "user": args.user}))
    return 0


def cmd_topics_list(ctx: Context, args: argparse.Namespace) -> int:
    ctx.database()
    query = Subscription.select().where(Subscription.active == True)  # noqa: E712 - peewee expression
    if args.topic:
        query = query.where(Subscription.topic == args.topic)
    rows = [{"topic": s.topic, "user": s.user_id} for s in query.order_by(Subscription.topic, Subscription.user_id)]
    print_json(rows) if args.json else print_table(rows, ["topic", "user"])
    return 0


def cmd_inbox_list(ctx: Context, args: argparse.Namespace) -> int:
    """The user's newest notifications not archived, as the API lists them (dispatcher/commands/inbox.py)."""
    ctx.database()
    page = inbox.list_page(args.user, inbox.Filters(unread=True if args.unread else None), limit=args.limit)
    rows = [notification(item).model_dump(mode="json") for item in page.items]
    if args.json:
        print_json(rows)
    else:
        print_table(
            [{**r, "read": "yes" if r["read_at"] else ""} for r in rows], ["id", "created_at", "type", "title", "read"]
        )
    return 0


def cmd_inbox_mark_read(ctx: Context, args: argparse.Namespace) -> int:
    """Mark read (and seen) the given notifications of the user, or with --all every unread one not archived."""
    if not args.ids and not args.all:
        raise TidingsError("name the notification ids to mark, or --all")
    ctx.database()
    marked = inbox.read_all(args.user) if args.all else inbox.read(args.user, args.ids)
    print(f"marked {marked} read")
    return 0


def cmd_token(ctx: Context, args: argparse.Namespace) -> int:
    secret = ctx.settings.user_token_secret
    if secret is None:
        raise TidingsError("set TIDINGS_USER_TOKEN_SECRET first: user tokens are signed with it")
    ttl = args.ttl if args.ttl is not None else min(3600.0, ctx.settings.user_token_max_ttl)
    if not 0 < ttl <= ctx.settings.user_token_max_ttl:
        raise TidingsError(
            f"--ttl must be between 1 and TIDINGS_USER_TOKEN_MAX_TTL ({ctx.settings.user_token_max_ttl:g}) s"
        )
    print(mint_user_token(secret, args.user, ttl=ttl))
    return 0


def cmd_openapi(ctx: Context, args: argparse.Namespace) -> int:
    sys.stdout.write(openapi_text(ctx.settings, ctx.catalog))
    return 0


def cmd_deliveries(ctx: Context, args: argparse.Namespace) -> int:
    ctx.database()
    event = find_event(args.event_id, args.source or None)
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
        for d in event_deliveries(event)
    ]
    if args.json:
        print_json({"event": {"id": event.event_id, "source": event.source, "type": event.type}, "deliveries": rows})
    else:
        print(f"{event.type} id={event.event_id} source={event.source}")
        print_table(rows, ["id", "user", "channel", "status", "attempts", "sent_at", "last_error"])
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
    p.add_argument("--procfile", default=str(PROJECT_ROOT / "Procfile"))
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
    p.add_argument("channel", choices=channel_names())
    p.add_argument("state", choices=("on", "off"))
    p = command(prefs, "show", cmd_prefs_show, "show what a user gets now per type and channel, and their settings")
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

    cli_webhooks.add_parser(sub, command)
    cli_schedule.add_parser(sub, command)
    cli_rankings.add_parser(sub, command)
    cli_dlq.add_parser(sub, command)

    p = command(sub, "token", cmd_token, "mint a user token for the HTTP API (for trying it; apps mint their own)")
    p.add_argument("user")
    p.add_argument("--ttl", type=float, help="seconds it is valid (default 3600, at most TIDINGS_USER_TOKEN_MAX_TTL)")

    command(sub, "openapi", cmd_openapi, "print the HTTP API's OpenAPI document (docs/openapi.json)")

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
