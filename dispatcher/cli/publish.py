"""`tidings publish`: one CloudEvent to the exchange, or with --api to a Tidings' ``POST /v1/events``.

Over AMQP the event is checked here first, as the worker will check it. Over HTTP the server checks
it (its catalog and keys are the ones that count) and its answer is printed: the accepted event's id
and source, or the problem's detail as an error. That is how one publishes to the embedded mode
(`tidings dev`), which has no RabbitMQ.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from dispatcher.amqp.intake import CONTENT_TYPE
from dispatcher.amqp.publisher import Publisher, build_event
from dispatcher.cli.console import CLI_SOURCE, Context, innermost
from dispatcher.core.errors import TidingsError
from dispatcher.core.events import parse_event
from dispatcher.core.settings import redact_url
from dispatcher.core.timing import check_schedule

#: Seconds to connect, and then to wait for the answer (the server answers once RabbitMQ confirmed).
API_TIMEOUT = 10.0
EVENTS_PATH = "/v1/events"


def cmd_publish(ctx: Context, args: argparse.Namespace) -> int:
    event = _event(args)
    if args.api:
        answer = post_event(args.api, _api_key(ctx, args), event)
        print(f"published {event.get('type')} id={answer['id']} source={answer['source']} to {redact_url(args.api)}")
        return 0
    if args.api_key_file:
        raise TidingsError("--api-key-file goes with --api URL")
    checked = parse_event(event, ctx.catalog)  # refuse locally what the worker would dead-letter
    check_schedule(checked, ctx.settings.schedule_horizon)
    try:
        publisher = Publisher(ctx.settings.broker_url, ctx.settings.exchange)
    except OSError as e:  # an unknown host: pika lets the resolver's error through
        raise TidingsError(f"cannot reach RabbitMQ at {redact_url(ctx.settings.broker_url)}: {innermost(e)}") from None
    with publisher:
        publisher.publish(event)
    print(f"published {checked.type} id={checked.id} source={checked.source}")
    return 0


def _event(args: argparse.Namespace) -> dict[str, Any]:
    if args.file:
        if args.type or args.data or args.id or args.source != CLI_SOURCE:
            raise TidingsError("--file publishes the file as it is: give either it, or a TYPE with --data")
        return read_json_object(args.file)
    if not args.type:
        raise TidingsError("give a TYPE and --data, or --file EVENT.json")
    data = json_object(args.data, "--data") if args.data else {}
    return build_event(args.type, data, source=args.source, id=args.id)


def read_json_object(path: str) -> dict[str, Any]:
    """The JSON object in the file ``path`` ('-': standard input); a one-line TidingsError if there is none."""
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as e:
        raise TidingsError(f"cannot read {path}: {e.strerror or e}") from None
    return json_object(raw, path)


def json_object(text: str | bytes, what: str) -> dict[str, Any]:
    """``text`` as a JSON object; ``what`` names it in the error."""
    try:
        value = json.loads(text)
    except UnicodeDecodeError:
        raise TidingsError(f"{what} is not UTF-8 text") from None
    except (ValueError, RecursionError) as e:
        raise TidingsError(f"{what} is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise TidingsError(f"{what} is JSON but not an object (it is a {type(value).__name__})")
    return value


def _api_key(ctx: Context, args: argparse.Namespace) -> str:
    if args.api_key_file:
        try:
            key = Path(args.api_key_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) else "it is not UTF-8 text"
            raise TidingsError(f"cannot read the API key from {args.api_key_file}: {reason}") from None
        if not key:
            raise TidingsError(f"{args.api_key_file} is empty: it should hold an API key")
        return key
    if ctx.settings.api_key is None:
        raise TidingsError("publishing with --api needs an API key: set TIDINGS_API_KEY, or give --api-key-file FILE")
    return ctx.settings.api_key


def post_event(base_url: str, key: str, event: dict[str, Any], *, timeout: float = API_TIMEOUT) -> dict[str, Any]:
    """POST ``event`` to ``base_url``/v1/events in structured mode; the 202's body, or TidingsError with the reason."""
    url = base_url.rstrip("/") + EVENTS_PATH
    body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    headers = {"Content-Type": CONTENT_TYPE, "Accept": "application/json", "Authorization": f"Bearer {key}"}
    try:
        response = requests.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
    except requests.RequestException as e:
        raise TidingsError(f"cannot reach {redact_url(base_url)}: {innermost(e)}") from None
    answer = _json(response)
    if response.status_code == 202 and isinstance(answer.get("id"), str) and isinstance(answer.get("source"), str):
        return answer
    reason = answer.get("detail") or answer.get("title") or response.text.strip()[:200] or response.reason
    raise TidingsError(f"{redact_url(base_url)} answered {response.status_code} to POST {EVENTS_PATH}: {reason}")


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def add_parser(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    """The `publish` command."""
    p = command(sub, "publish", cmd_publish, "publish a CloudEvent to the exchange, or to a Tidings' HTTP API")
    p.add_argument("type", nargs="?", help="the event type, e.g. team.invite.sent")
    p.add_argument("--data", help="the event's data as a JSON object")
    p.add_argument("--source", default=CLI_SOURCE, help=f"the event source (default {CLI_SOURCE})")
    p.add_argument("--id", help="the event id (default: a new UUID)")
    p.add_argument("--file", help="publish this CloudEvent JSON file as it is ('-': standard input)")
    p.add_argument(
        "--api",
        metavar="URL",
        help="POST it to URL/v1/events (e.g. http://127.0.0.1:8000, `tidings dev`) instead of RabbitMQ",
    )
    p.add_argument(
        "--api-key-file", metavar="FILE", help="with --api: the API key is in FILE (default: $TIDINGS_API_KEY)"
    )
