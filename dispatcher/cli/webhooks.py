"""`tidings webhooks …`: signed-webhook endpoints from the command line."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from typing import Any

from channels import channel_names
from dispatcher.cli.console import Context, print_json, print_table
from dispatcher.cli.progress import Reporter
from dispatcher.commands.endpoints import new_secret, replay_deliveries
from dispatcher.core import clock
from dispatcher.core.errors import TidingsError
from dispatcher.core.events import parse_time
from dispatcher.storage.deliveries import find_event
from dispatcher.storage.models import Delivery, WebhookEndpoint


def cmd_webhooks_add(ctx: Context, args: argparse.Namespace) -> int:
    secret = args.secret or new_secret()
    data = {"id": args.id, "url": args.url, "secret": secret, "types": args.types, "enabled": True, "owner": args.owner}
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
        rotating = bool(
            e.previous_secret
            and e.rotated_at
            and now < e.rotated_at + dt.timedelta(seconds=ctx.settings.secret_rotation_overlap)
        )
        rows.append(
            {
                "id": e.id,
                "url": redact_url(e.url),
                "types": e.types,
                "enabled": e.enabled,
                "disabled_reason": e.disabled_reason,
                "owner": e.owner,
                "failing_since": e.failing_since.isoformat() + "Z" if e.failing_since else None,
                "rotating_secret": rotating,
            }
        )
    if args.json:
        print_json(rows)
    else:
        print_table(
            [{**r, "types": ",".join(r["types"])} for r in rows],
            ["id", "url", "types", "enabled", "owner", "disabled_reason"],
        )
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
    if bool(args.event_id) == bool(args.since):
        raise TidingsError("name an EVENT_ID, or --since TIME for every failed webhook since then (not both)")
    ctx.database()
    channels = channel_names(addresses="endpoint")
    if args.endpoint:
        _endpoint(ctx, args.endpoint)
    if args.event_id:
        event = find_event(args.event_id, args.source or None)
        hooks = Delivery.select().where(Delivery.event == event, Delivery.channel.in_(channels))
        if args.endpoint:
            hooks = hooks.where(Delivery.user_id == args.endpoint)
        if not hooks.exists():
            to = f" to {args.endpoint!r}" if args.endpoint else ""
            raise TidingsError(f"event {args.event_id!r} has no webhook deliveries{to}: no endpoint took its type")
    with Reporter("replaying webhook deliveries") as progress:
        replayed = replay_deliveries(
            channels,
            event_id=args.event_id or None,
            source=args.source if args.event_id else None,
            since=None if args.event_id else clock.to_utc_naive(parse_time(args.since, "--since")),
            endpoint=args.endpoint,
            progress=progress,
        )
    print(f"replaying {replayed} webhook deliveries (the scheduler sends them within a minute)")
    return 0


def add_parser(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    """The `webhooks` subcommands."""
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
    p = command(
        hooks,
        "rotate-secret",
        cmd_webhooks_rotate,
        "give an endpoint a new secret; the old one keeps signing for TIDINGS_SECRET_ROTATION_OVERLAP",
    )
    p.add_argument("id")
    p = command(hooks, "replay", cmd_webhooks_replay, "send webhooks again with their original webhook-id")
    p.add_argument("event_id", nargs="?", help="replay this event's webhooks")
    p.add_argument("--source", help="the event's source, when several events share the id")
    p.add_argument("--since", help="replay every failed webhook delivery since this RFC 3339 time")
    p.add_argument("--endpoint", help="only to this endpoint")
