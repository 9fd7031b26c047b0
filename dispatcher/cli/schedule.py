"""`tidings schedule …`: scheduled deliveries, their status and times, and cancelling them."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from typing import Any, cast

from dispatcher.cli.console import Context, print_json, print_table
from dispatcher.core.errors import TidingsError
from dispatcher.storage.deliveries import find_event, scheduled_deliveries
from dispatcher.storage.models import Delivery, Event


def _row(delivery: Delivery) -> dict[str, Any]:
    return {
        "event_id": delivery.event.event_id,
        "source": delivery.event.source,
        "type": delivery.event.type,
        "user": delivery.user_id,
        "channel": delivery.channel,
        "status": delivery.status,
        "due_at": delivery.next_attempt_at.isoformat() + "Z",
        "sent_at": delivery.sent_at.isoformat() + "Z" if delivery.sent_at else None,
        "cancel_key": delivery.event.cancel_key,
    }


def cmd_schedule_list(ctx: Context, args: argparse.Namespace) -> int:
    ctx.database()
    rows = [_row(d) for d in scheduled_deliveries(status=args.status or None, limit=args.limit)]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["due_at", "status", "type", "user", "channel", "event_id", "cancel_key"])
    return 0


def _event(ctx: Context, event_id: str, source: str | None) -> Event:
    ctx.database()
    return find_event(event_id, source or None)


def cmd_schedule_show(ctx: Context, args: argparse.Namespace) -> int:
    event = _event(ctx, args.event_id, args.source)
    rows = [
        _row(d)
        for d in Delivery.select(Delivery, Event)
        .join(Event)
        .where(Delivery.event == event)
        .order_by(Delivery.user_id, Delivery.channel)
    ]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["user", "channel", "status", "due_at", "sent_at"])
    return 0


def cmd_schedule_cancel(ctx: Context, args: argparse.Namespace) -> int:
    if args.key:
        data: dict[str, Any] = {"cancel_key": args.key}
        events = Event.select().where(Event.cancel_key == args.key)
    elif args.event_id:
        event = _event(ctx, args.event_id, args.source)
        data = {"source": event.source, "id": event.event_id}
        events = Event.select().where(Event.id == event.id)
    else:
        raise TidingsError("name an EVENT_ID, or --key CANCEL_KEY")
    ctx.database()
    if args.key and not events.exists():
        raise TidingsError(f"no event has cancel_key {args.key!r}")
    if args.user:
        targets = Delivery.select(Delivery.user_id).where(Delivery.event.in_(events), Delivery.user_id.in_(args.user))
        strangers = sorted(set(args.user) - {d.user_id for d in targets})
        if strangers:
            raise TidingsError(f"not a recipient of {args.key or args.event_id!r}: {', '.join(strangers)}")
        data["recipients"] = args.user
    ctx.command("tidings.notification.cancel", data)
    query = Delivery.select(Delivery.status).where(Delivery.event.in_(events))
    if args.user:
        query = query.where(Delivery.user_id.in_(args.user))
    # cast: peewee's stubs type the rows of .tuples() as model instances
    statuses = [status for (status,) in cast(Iterable[tuple[str]], query.tuples())]
    cancelled = statuses.count("cancelled")
    others = {s: statuses.count(s) for s in sorted(set(statuses)) if s != "cancelled"}
    print(f"cancelled: {cancelled}" + (f"; unchanged: {others}" if others else ""))
    return 0


def add_parser(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    """The `schedule` subcommands."""
    schedule = sub.add_parser("schedule", help="scheduled deliveries").add_subparsers(dest="action", required=True)
    p = command(schedule, "list", cmd_schedule_list, "scheduled deliveries, latest due first")
    p.add_argument("--status", choices=("pending", "sent", "cancelled", "failed", "skipped", "sending"))
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")
    p = command(schedule, "show", cmd_schedule_show, "the deliveries of one event, with their times")
    p.add_argument("event_id")
    p.add_argument("--source")
    p.add_argument("--json", action="store_true")
    p = command(schedule, "cancel", cmd_schedule_cancel, "cancel what has not gone out yet")
    p.add_argument("event_id", nargs="?")
    p.add_argument("--source")
    p.add_argument("--key", help="cancel every event with this cancel_key")
    p.add_argument("--user", nargs="+", help="only these recipients")
