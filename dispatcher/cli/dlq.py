"""`tidings dlq …`: dead letters, with the reasons ingest kept; replay and purge.

Bodies are shown only by `show` (the operator asked for that one); `list` shows a
one-line preview with webhook secrets masked, and nothing here logs a body.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable
from typing import Any, cast

from dispatcher.cli.console import Context, print_json, print_table
from dispatcher.cli.progress import Reporter
from dispatcher.core.errors import TidingsError
from dispatcher.ops import dead_letters as dlq
from dispatcher.storage.models import Rejection

SWEEP_NOTE = (
    "only ingest dead letters are replayed: the deliveries of a dead delivery message that are still "
    "pending are sent again by the periodic sweep (TIDINGS_STALE_AFTER)"
)


def _reasons(ctx: Context, message_ids: list[str]) -> dict[str, str]:
    """Why ingest rejected each message, from the Rejection rows it keeps."""
    ctx.database()
    found: dict[str, str] = {}
    for start in range(0, len(message_ids), 500):
        chunk = message_ids[start : start + 500]
        query = Rejection.select(Rejection.message_id, Rejection.reason).where(Rejection.message_id.in_(chunk))
        # cast: peewee's stubs type the rows of .tuples() as model instances
        found.update(cast(Iterable[tuple[str, str]], query.tuples()))
    return found


def _failure(letter: dlq.DeadLetter) -> dict[str, Any]:
    """What a dramatiq message says about itself: actor, arguments, retries, the last recorded error."""
    message = letter.message
    options = message.get("options")
    if not isinstance(options, dict):
        options = {}
    traceback = options.get("traceback")
    lines = [line for line in str(traceback or "").splitlines() if line.strip()]
    return {
        "actor": message.get("actor_name"),
        "args": message.get("args"),
        "kwargs": message.get("kwargs"),
        "retries": options.get("retries", 0),
        "error": lines[-1][:200] if lines else None,
        "traceback": traceback,
    }


def _row(letter: dlq.DeadLetter, reasons: dict[str, str], ingest: bool) -> dict[str, Any]:
    if ingest:
        return {
            **letter.summary(),
            "reason": reasons.get(letter.message_id, dlq.UNKNOWN_REASON),
            "preview": letter.preview,
        }
    failure = _failure(letter)
    del failure["traceback"]
    return {**letter.summary(), **failure}


def cmd_dlq_list(ctx: Context, args: argparse.Namespace) -> int:
    counts = dlq.queue_counts(ctx.settings)
    with dlq.DeadLetterReader(ctx.settings, args.queue) as reader:
        letters = list(reader.read(args.limit))
        total = reader.ready
    ingest = args.queue == "ingest"
    reasons = _reasons(ctx, [letter.message_id for letter in letters]) if ingest else {}
    rows = [_row(letter, reasons, ingest) for letter in letters]
    if args.json:
        print_json({"queue": reader.queue, "total": total, "dead_letters": rows, "dead_letter_queues": counts})
        return 0
    print(f"{reader.queue}: {total} dead letters" + (f", the oldest {len(rows)} shown" if len(rows) < total else ""))
    if ingest:
        print_table(rows, ["message_id", "dead_lettered_at", "routing_key", "reason", "preview"])
    else:
        print_table(
            [{**r, "args": json.dumps(r["args"])[:40]} for r in rows],
            ["message_id", "dead_lettered_at", "actor", "args", "retries", "error"],
        )
    others = [
        {"queue": name, "messages": "(not declared)" if count is None else count}
        for name, count in counts.items()
        if name != reader.queue
    ]
    print("\nother dead-letter queues (`tidings dlq list --queue NAME`):")
    print_table(others, ["queue", "messages"])
    return 0


def cmd_dlq_show(ctx: Context, args: argparse.Namespace) -> int:
    letters = dlq.find(ctx.settings, args.message_id)
    if not letters:
        raise TidingsError(f"no dead letter has message id {args.message_id!r} (`tidings dlq list` shows them)")
    ingest_queue = dlq.xq(ctx.settings, "ingest")
    reasons = _reasons(ctx, [args.message_id])
    shown = []
    for letter in letters:
        kind, body = dlq.displayable_body(letter.body)
        details = (
            {"reason": reasons.get(letter.message_id, dlq.UNKNOWN_REASON)}
            if letter.queue == ingest_queue
            else _failure(letter)
        )
        shown.append({**letter.summary(), **details, "body_format": kind, "body": body})
    if args.json:
        print_json(shown)
        return 0
    for number, item in enumerate(shown):
        if number:
            print()
        traceback = item.pop("traceback", None)
        body = item.pop("body")
        for key, value in item.items():
            if key != "body_format" and value is not None:
                print(f"{key.replace('_', ' ')}: {value if value != '' else '(the default exchange)'}")
        if traceback and isinstance(body, dict) and isinstance(body.get("options"), dict):
            body = {**body, "options": {**body["options"], "traceback": "(below)"}}
        print(f"body ({item['body_format']}):")
        print(json.dumps(body, indent=2, ensure_ascii=False) if item["body_format"] == "json" else body)
        if traceback:
            print("traceback of the attempt before the last (the last one is in the worker's log):")
            print(traceback.rstrip())
    return 0


def cmd_dlq_replay(ctx: Context, args: argparse.Namespace) -> int:
    if bool(args.message_id) == bool(args.all):
        raise TidingsError("name one MESSAGE_ID, or --all")
    queue = dlq.xq(ctx.settings, "ingest")
    done, failed = 0, 0
    total = None
    if args.all:
        waiting = dlq.queue_counts(ctx.settings).get(queue) or 0
        total = min(waiting, args.limit) if args.limit else waiting
    replays = dlq.replay(ctx.settings, message_id=args.message_id, limit=args.limit if args.all else None)
    with Reporter("replaying dead letters", total=total) as progress:
        for replayed in progress.track(replays):
            letter = replayed.letter
            if replayed.error is None:
                done += 1
                print(f"replayed  {letter.message_id}  {letter.routing_key}")
            else:
                failed += 1
                print(f"left      {letter.message_id}  {letter.routing_key}: {replayed.error}")
    if args.message_id and not done + failed:
        elsewhere = dlq.find(ctx.settings, args.message_id)
        if elsewhere:
            raise TidingsError(f"{args.message_id} is in {elsewhere[0].queue}: {SWEEP_NOTE}")
        raise TidingsError(f"no dead letter has message id {args.message_id!r} (`tidings dlq list` shows them)")
    print(
        f"replayed {done} of {done + failed} from {queue}; an event still invalid comes back with its reason, "
        "one already processed is a duplicate and changes nothing"
    )
    if failed:
        raise TidingsError(f"{failed} could not be published again and stay in {queue}")
    return 0


def cmd_dlq_purge(ctx: Context, args: argparse.Namespace) -> int:
    queue = dlq.xq(ctx.settings, args.queue)
    if not args.yes:
        waiting = dlq.queue_counts(ctx.settings).get(queue) or 0
        raise TidingsError(f"purge deletes the {waiting} messages in {queue} for good: add --yes to do it")
    print(f"purged {dlq.purge(ctx.settings, args.queue)} messages from {queue}")
    return 0


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) == 0:
        raise argparse.ArgumentTypeError("must be a whole number greater than 0")
    return int(value)


def add_parser(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    """The `dlq` subcommands."""
    dead = sub.add_parser("dlq", help="dead letters: rejected events, and messages whose retries ran out")
    actions = dead.add_subparsers(dest="action", required=True)
    p = command(actions, "list", cmd_dlq_list, "list dead letters, oldest first, with reasons; consumes nothing")
    p.add_argument("--queue", choices=dlq.QUEUES, default="ingest", help="whose dead letters (default: ingest)")
    p.add_argument("--limit", type=_positive, default=100, help="at most this many (default 100)")
    p.add_argument("--json", action="store_true")
    p = command(actions, "show", cmd_dlq_show, "show one dead letter in full, body included")
    p.add_argument("message_id")
    p.add_argument("--json", action="store_true")
    p = command(
        actions,
        "replay",
        cmd_dlq_replay,
        "publish rejected events again, by their original routing key; safe to repeat",
    )
    p.add_argument("message_id", nargs="?")
    p.add_argument("--all", action="store_true", help="every ingest dead letter (up to --limit)")
    p.add_argument("--limit", type=_positive, help="with --all: at most this many, oldest first")
    p = command(actions, "purge", cmd_dlq_purge, "delete every message of a dead-letter queue for good")
    p.add_argument("--queue", choices=dlq.QUEUES, default="ingest", help="whose dead letters (default: ingest)")
    p.add_argument("--yes", action="store_true", help="yes, delete them")
