"""`tidings users …`: create or change a user through tidings.user.upsert, and list users."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from dispatcher.cli.console import Context, print_json, print_table
from dispatcher.commands.registry import USER_FIELDS
from dispatcher.core.errors import TidingsError
from dispatcher.storage.models import User

#: The fields `users list` prints as a table (--json prints every field).
TABLE_COLUMNS = ["id", "email", "name", "timezone", "locale", "digest_time", "quiet_hours"]


def cmd_users_upsert(ctx: Context, args: argparse.Namespace) -> int:
    if (args.quiet_start is None) != (args.quiet_end is None):
        raise TidingsError("--quiet-start and --quiet-end go together: both HH:MM, or both '' to end quiet hours")
    data: dict[str, Any] = {"id": args.id}
    for field in USER_FIELDS:
        value = getattr(args, field, None)  # a field without an option here is left unchanged
        if value is not None:
            data[field] = None if value == "" else value
    print(ctx.command("tidings.user.upsert", data))
    return 0


def user_row(user: User) -> dict[str, Any]:
    """A user as `users list --json` shows it: the Discord webhook URL only as "set" (it embeds a token)."""
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "timezone": user.timezone,
        "locale": user.locale,
        "discord_webhook": "set" if user.discord_webhook_url else None,
        "digest_time": user.digest_time,
        "quiet_start": user.quiet_start,
        "quiet_end": user.quiet_end,
    }


def quiet_hours(row: dict[str, Any]) -> str | None:
    """'22:00-07:00', or None without quiet hours."""
    return f"{row['quiet_start']}-{row['quiet_end']}" if row["quiet_start"] and row["quiet_end"] else None


def cmd_users_list(ctx: Context, args: argparse.Namespace) -> int:
    ctx.database()
    rows = [user_row(u) for u in User.select().order_by(User.id)]
    if args.json:
        print_json(rows)
    else:
        print_table([{**r, "quiet_hours": quiet_hours(r)} for r in rows], TABLE_COLUMNS)
    return 0


def add_parser(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    """The `users` subcommands."""
    users = sub.add_parser("users", help="users").add_subparsers(dest="action", required=True)
    p = command(users, "upsert", cmd_users_upsert, "create or update a user ('' clears a field)")
    p.add_argument("id")
    for field in ("email", "name", "timezone", "locale"):
        p.add_argument(f"--{field}")
    p.add_argument("--discord-webhook-url", dest="discord_webhook_url")
    p.add_argument(
        "--digest-time", dest="digest_time", metavar="HH:MM", help="local time of the daily digest ('' : 08:00)"
    )
    p.add_argument("--quiet-start", dest="quiet_start", metavar="HH:MM", help="local start of quiet hours")
    p.add_argument("--quiet-end", dest="quiet_end", metavar="HH:MM", help="their end; both or neither ('' '')")
    p = command(users, "list", cmd_users_list, "list users, with their digest time and quiet hours")
    p.add_argument("--json", action="store_true")
