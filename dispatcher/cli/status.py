"""`tidings status` (one screen for operators) and `tidings health` (exec probes); docs/operations.md.

Both exit 1 when something needs attention and say what, so a cron job or a Kubernetes exec probe can use
them as they are. status reads what /metrics reads (dispatcher/ops/observations.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from typing import Any

from dispatcher.cli.console import Context, print_json, print_table
from dispatcher.ops.health import probe_all
from dispatcher.ops.observations import DEFAULT_TIMEOUT, Observations, observe
from dispatcher.storage.db import init_database


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _unacked(value: int | None, declared: bool) -> str:
    return "-" if not declared else ("?" if value is None else str(value))


def _when(moment: dt.datetime | None, now: dt.datetime) -> str:
    if moment is None:
        return "never"
    ago = int((now - moment).total_seconds())
    return (
        f"{moment:%Y-%m-%d %H:%M:%S} ({ago // 60} min {ago % 60} s ago)" if ago < 86400 else f"{moment:%Y-%m-%d %H:%M}"
    )


def print_status(seen: Observations) -> None:
    """The one screen: queues, deliveries per channel, disabled targets, periodic jobs, then what needs attention."""
    ms = seen.milliseconds
    print(
        f"Tidings at {seen.observed_at:%Y-%m-%d %H:%M:%S} UTC; broker {seen.broker} "
        f"({ms['broker']:.0f} ms), database ({ms['database']:.0f} ms)"
        + (f", management API {seen.rabbitmq_api} ({ms['rabbitmq_api']:.0f} ms)" if seen.rabbitmq_api else "")
    )
    if seen.channels_off:
        print(
            f"channels switched off (TIDINGS_CHANNELS): {', '.join(seen.channels_off)}; "
            "their deliveries are recorded as skipped"
        )
    print(
        "\nqueues (unacked: in progress; delayed: ready in .DQ; delayed_unacked: held by a worker until due; "
        "dead: in .XQ; ?: unknown):"
    )
    if seen.queues is None:
        print(f"  (unknown: {seen.errors['broker']})")
    else:
        print_table(
            [
                {
                    "queue": q.name,
                    "ready": _count(q.ready),
                    "unacked": _unacked(q.unacknowledged, q.consumers is not None),
                    "consumers": _count(q.consumers),
                    "delayed": _count(q.delayed),
                    "delayed_unacked": _unacked(q.delayed_unacknowledged, q.delayed is not None),
                    "dead": _count(q.dead),
                }
                for q in seen.queues
            ],
            ["queue", "ready", "unacked", "consumers", "delayed", "delayed_unacked", "dead"],
        )
        if seen.errors["rabbitmq_api"]:
            print(f"unacknowledged: unknown ({unknown_unacknowledged(seen)})")
    state = seen.database
    if state is None:
        print(f"\ndeliveries, targets, periodic jobs: (unknown: {seen.errors['database']})")
    else:
        print("\ndeliveries not final (failing: retrying after a failure; failed: in the last 24 h):")
        print_table(
            [dataclass_row(c) for c in state.channels],
            ["channel", "pending", "held", "failing", "failed", "scheduled", "due_within_hour"],
        )
        targets = ", ".join(f"{channel} {count}" for channel, count in sorted(state.disabled_targets.items()))
        print(f"\ndisabled targets: {targets or 'none'}; disabled webhook endpoints: {state.disabled_endpoints}")
        print("\nperiodic jobs:")
        print_table(
            [
                {
                    "job": job.job,
                    "schedule": job.schedule,
                    "last_run": _when(job.last_run, seen.observed_at),
                    "outcome": job.outcome,
                    "overdue": "OVERDUE" if job.overdue else "",
                }
                for job in state.jobs
            ],
            ["job", "schedule", "last_run", "outcome", "overdue"],
        )
    attention = seen.attention()
    print()
    if attention:
        print("needs attention:")
        for line in attention:
            print(f"  - {line}")
    else:
        print("all well")


def unknown_unacknowledged(seen: Observations) -> str:
    """Why the unacknowledged are unknown, and what to do about it."""
    if seen.rabbitmq_api is None:
        return "set TIDINGS_RABBITMQ_API_URL / enable the management plugin"
    return (
        f"RabbitMQ's management API cannot be read: {seen.errors['rabbitmq_api']}; "
        "check TIDINGS_RABBITMQ_API_URL / enable the management plugin"
    )


def dataclass_row(value: Any) -> dict[str, Any]:
    return dict(vars(value))


def cmd_status(ctx: Context, args: argparse.Namespace) -> int:
    init_database(ctx.settings.database_url)  # read only: status never migrates
    seen = observe(ctx.settings, timeout=args.timeout)
    if args.json:
        print_json(seen.to_json())
    else:
        print_status(seen)
    return 1 if seen.attention() else 0


def cmd_health(ctx: Context, args: argparse.Namespace) -> int:
    probes = probe_all(ctx.settings, timeout=args.timeout)
    for probe in probes:
        print(probe.line())
    return 0 if all(probe.ok for probe in probes) else 1


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number of seconds") from None
    if not 0 < seconds <= 60:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 60 seconds")
    return seconds


def add_parser(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    """The `status` and `health` commands."""
    p = command(
        sub,
        "status",
        cmd_status,
        "queues, deliveries per channel, disabled targets, periodic jobs; exit 1 if something needs attention",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, help="seconds per source (default 3)")
    p = command(sub, "health", cmd_health, "can the database, RabbitMQ and the SMTP server be reached? exit 0 or 1")
    p.add_argument("--timeout", type=_seconds, default=5.0, help="seconds per check (default 5)")
