"""`tidings prefs …`: set a user's preferences through tidings.preferences.set, and show what routing decides."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from typing import Any

from channels import channel_names
from dispatcher.cli.console import Context, print_json, print_table, require_user
from dispatcher.commands.registry import DELIVERY_MODES
from dispatcher.core import clock
from dispatcher.core.catalog import WILDCARD
from dispatcher.core.errors import TidingsError
from dispatcher.core.events import format_time
from dispatcher.pipeline.routing import plan_deliveries
from dispatcher.storage.models import DeliveryStatus, Preference, User


def cmd_prefs_set(ctx: Context, args: argparse.Namespace) -> int:
    if args.state is None and args.mode is None:
        raise TidingsError("say on or off, --mode immediate|digest, or both")
    if not args.create:
        require_user(ctx, args.user, create="--create")
    item: dict[str, Any] = {"type": args.type, "channel": args.channel}
    if args.state is not None:
        item["enabled"] = args.state == "on"
    if args.mode is not None:
        item["mode"] = args.mode
    print(ctx.command("tidings.preferences.set", {"user": args.user, "preferences": [item]}))
    return 0


def _user_settings(user: User | None) -> dict[str, Any] | None:
    """What routing reads from the user's row; None without one (the defaults apply)."""
    if user is None:
        return None
    return {
        "timezone": user.timezone,
        "digest_time": user.digest_time,
        "quiet_start": user.quiet_start,
        "quiet_end": user.quiet_end,
    }


def _describe_settings(settings: dict[str, Any] | None) -> str:
    if settings is None:
        return "no user row (tidings.user.upsert): timezone UTC, digest at 08:00, no quiet hours"
    quiet = (
        f"quiet hours {settings['quiet_start']}-{settings['quiet_end']} ({', '.join(channel_names(quiet_hours=True))})"
        if settings["quiet_start"] and settings["quiet_end"]
        else "no quiet hours"
    )
    return f"timezone {settings['timezone']}, digest at {settings['digest_time']}, {quiet}"


def cmd_prefs_show(ctx: Context, args: argparse.Namespace) -> int:
    """What routing decides for the user now, per type and channel, and the settings stored for them."""
    require_user(ctx, args.user)
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
        rows.append({"type": name, "critical": bool(kind.critical), "channels": routes})
    stored = [
        {"type": p.type, "channel": p.channel, "enabled": p.enabled, "mode": p.mode}
        for p in Preference.select()
        .where(Preference.user_id == args.user)
        .order_by(Preference.type, Preference.channel)
    ]
    settings = _user_settings(User.get_or_none(User.id == args.user))
    at = format_time(now.replace(tzinfo=dt.UTC))
    if args.json:
        print_json({"user": args.user, "at": at, "settings": settings, "resolved": rows, "stored": stored})
        return 0
    print(f"{args.user}: {_describe_settings(settings)}")
    print(f"what {args.user} gets now ({at}):")
    print_table(
        [{"type": row["type"], **{c: _route_cell(r) for c, r in row["channels"].items()}} for row in rows],
        ["type", *channels],
    )
    print("(locked: a critical type's default channel, which preferences cannot switch off)")
    print(f"\nstored settings ({WILDCARD!r} applies to every type; unset: the {WILDCARD!r} row's, or the default):")
    print_table(
        [
            {
                **s,
                "enabled": "unset" if s["enabled"] is None else "on" if s["enabled"] else "off",
                "mode": s["mode"] or "unset",
            }
            for s in stored
        ],
        ["type", "channel", "enabled", "mode"],
    )
    return 0


def _route_cell(route: dict[str, Any]) -> str:
    """'off', 'on' or 'digest', with ', locked' and ', held by quiet hours until <time>' when they apply."""
    text = ("digest" if route["mode"] == "digest" else "on") if route["enabled"] else "off"
    if route["locked"]:
        text += ", locked"
    if route["quiet_until"]:
        text += f", held by quiet hours until {route['quiet_until']}"
    return text


def add_parser(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    """The `prefs` subcommands."""
    prefs = sub.add_parser("prefs", help="notification preferences").add_subparsers(dest="action", required=True)
    p = command(
        prefs,
        "set",
        cmd_prefs_set,
        "turn a channel on or off for a type ('*': every type), or choose its mode; what is not named stays as it is",
    )
    p.add_argument("user")
    p.add_argument("type", help="a catalog type, or '*'")
    p.add_argument("channel", choices=channel_names())
    p.add_argument("state", nargs="?", choices=("on", "off"))
    p.add_argument(
        "--mode",
        choices=DELIVERY_MODES,
        help="digest: collect them into the daily digest (email); immediate: send each",
    )
    p.add_argument("--create", action="store_true", help="set them even for a user Tidings knows nothing of yet")
    p = command(prefs, "show", cmd_prefs_show, "show what a user gets now per type and channel, and their settings")
    p.add_argument("user")
    p.add_argument("--json", action="store_true")
