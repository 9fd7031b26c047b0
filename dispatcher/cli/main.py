"""The ``tidings`` command: schema, publishing, users, preferences, topics, inboxes, deliveries.

Control commands given here go through the same code as those arriving on the
exchange (a CloudEvent applied once), so the two can never disagree.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dispatcher.api.auth import mint_user_token
from dispatcher.api.openapi import openapi_text
from dispatcher.api.schemas import notification
from dispatcher.cli import dev as cli_dev
from dispatcher.cli import dlq as cli_dlq
from dispatcher.cli import prefs as cli_prefs
from dispatcher.cli import publish as cli_publish
from dispatcher.cli import rankings as cli_rankings
from dispatcher.cli import schedule as cli_schedule
from dispatcher.cli import status as cli_status
from dispatcher.cli import users as cli_users
from dispatcher.cli import webhooks as cli_webhooks
from dispatcher.cli.console import Context, explain, print_json, print_table, require_user
from dispatcher.cli.progress import Reporter
from dispatcher.commands import inbox
from dispatcher.core.errors import ConfigError, TidingsError
from dispatcher.core.logs import configure_logging
from dispatcher.core.settings import PROJECT_ROOT, Settings, get_settings
from dispatcher.storage.db import init_database
from dispatcher.storage.deliveries import event_deliveries, find_event
from dispatcher.storage.migrate import migrate
from dispatcher.storage.models import InboxItem, Subscription

# --- commands ---------------------------------------------------------------


def cmd_migrate(ctx: Context, args: argparse.Namespace) -> int:
    init_database(ctx.settings.database_url)
    with Reporter("migrating the schema") as progress:
        before, after = migrate(progress)
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


def cmd_topics_change(ctx: Context, args: argparse.Namespace) -> int:
    if args.action == "subscribe" and not args.create:
        require_user(ctx, args.user, create="--create")
    if args.action == "unsubscribe":
        ctx.database()
        subscription = Subscription.select().where(Subscription.topic == args.topic, Subscription.user_id == args.user)
        if not subscription.exists():
            raise TidingsError(f"{args.user!r} is not subscribed to {args.topic!r} (`tidings topics list` shows who)")
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
    require_user(ctx, args.user)
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
    require_user(ctx, args.user)
    if not args.all:
        ids = list(dict.fromkeys(args.ids))
        held = InboxItem.select(InboxItem.id).where(InboxItem.user_id == args.user, InboxItem.id.in_(ids))
        missing = sorted(set(ids) - {item.id for item in held})
        if missing:
            raise TidingsError(f"{args.user!r} has no notification {', '.join(map(str, missing))}; nothing marked")
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

    cli_publish.add_parser(sub, command)
    cli_users.add_parser(sub, command)
    cli_prefs.add_parser(sub, command)

    topics = sub.add_parser("topics", help="topic subscriptions").add_subparsers(dest="action", required=True)
    for action in ("subscribe", "unsubscribe"):
        p = command(topics, action, cmd_topics_change, f"{action} a user to a topic")
        p.add_argument("topic")
        p.add_argument("user")
        p.set_defaults(action=action)
        if action == "subscribe":
            p.add_argument("--create", action="store_true", help="even a user Tidings knows nothing of yet")
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
    cli_rankings.add_series_parser(sub, command)
    cli_dlq.add_parser(sub, command)
    cli_status.add_parser(sub, command)
    cli_dev.add_parser(sub, command)

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
        code: int = args.func(ctx, args)
        sys.stdout.flush()  # output still buffered would meet a closed pipe at exit, past this handler
        return code
    except BrokenPipeError:
        _discard_stdout()  # the reader (`| head`) has gone: stop quietly, as Python's docs advise
        return 1
    except KeyboardInterrupt:
        print("tidings: interrupted", file=sys.stderr)
        return 130
    except TidingsError as e:
        print(f"tidings: error: {explain(e, ctx.settings)}", file=sys.stderr)
        return 1


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it again at exit cannot raise BrokenPipeError."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (a test's capture): nothing left to flush
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
