"""``tidings dev``: everything in one process, with nothing else installed (dispatcher/embedded/server.py)."""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dispatcher.amqp import local
from dispatcher.api.auth import mint_user_token
from dispatcher.cli.console import Context
from dispatcher.core.errors import ConfigError, TidingsError
from dispatcher.core.settings import Settings, redact_url
from dispatcher.embedded.demo import USERS, publish_demo
from dispatcher.embedded.outbox import OutboxServer
from dispatcher.embedded.receiver import PATH
from dispatcher.embedded.server import (
    DEV_KEY_NAME,
    DevPaths,
    Embedded,
    build,
    dev_environment,
    dev_secrets,
    when_serving,
)
from dispatcher.runtime.broker import configure_process
from dispatcher.storage.db import database
from dispatcher.storage.migrate import migrate

DEMO_TOKEN_TTL = 8 * 3600.0


def cmd_dev(ctx: Context, args: argparse.Namespace) -> int:
    paths = DevPaths(Path(args.dir).resolve())
    try:
        paths.root.mkdir(parents=True, exist_ok=True)
        dev = dev_secrets(paths)
        smtp = OutboxServer(paths.outbox, port=args.smtp_port)
        env = dev_environment(os.environ, paths, host=args.host, port=args.port, smtp_url=smtp.url, dev=dev)
        settings = Settings.from_env(env)
    except OSError as e:
        raise TidingsError(f"cannot use {paths.root}: {e}") from None
    except ConfigError as e:
        raise TidingsError(f"configuration error: {e}") from None
    configure_process(settings)
    before, after = migrate()
    embedded = build(settings, ctx.catalog, paths, smtp)
    when_serving(embedded, lambda: _started(embedded, args.demo, before != after))
    embedded.run()
    return 0


def _started(embedded: Embedded, demo: bool, migrated: bool) -> None:
    settings, base = embedded.settings, embedded.base_url
    published = 0
    if demo:
        bus = local.installed()
        assert bus is not None, "build() installs the local bus"
        published = publish_demo(bus, base + PATH, dt.datetime.now(dt.UTC), lambda: _recompute(embedded))
    key_file = embedded.paths.api_key_file
    lines = [
        "",
        "Tidings is running in one process (embedded mode): no RabbitMQ, mail server or receiver needed.",
        f"  API              {base}/docs",
        f"  start page       {base}/dev/",
        f"  outbox           {base}/dev/outbox       (files: {embedded.paths.outbox})",
        f"  webhooks         {base}/dev/webhooks     (receiver: {base}{PATH}<label>)",
        f"  database         {redact_url(settings.database_url)}",
        f"  API key          '{DEV_KEY_NAME}', all scopes, in {key_file}",
        "",
        "Publish an event (in another shell):",
        f"  tidings publish --api {base} --api-key-file {key_file} \\",
        '    team.invite.sent --data \'{"recipients": ["ana"], "team_name": "Night Owls", "inviter_name": "Ben"}\'',
    ]
    if demo:
        lines += ["", f"Demo: {published} events published for {', '.join(user for user, *_ in USERS)}."]
        secret = settings.user_token_secret
        assert secret is not None, "dev_environment sets it"
        user = USERS[0][0]
        token = mint_user_token(secret, user, ttl=min(DEMO_TOKEN_TTL, settings.user_token_max_ttl))
        lines += [f"  {user}'s inbox:  curl -H 'Authorization: Bearer {token}' {base}/v1/me/notifications"]
    if not _is_loopback(settings.http_host):
        lines += ["", f"Warning: {settings.http_host} is not loopback: the /dev pages (emails!) have no login."]
    lines.append("Stop it with Ctrl-C; a start after a stop sends what was left unsent.")
    print("\n".join(lines), flush=True)


def _recompute(embedded: Embedded) -> None:
    """Recompute the rankings now, in this thread (the periodic job's own code), and announce the changes."""
    with database.connection_context():
        embedded.broker.actors["recompute_rankings"].fn()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def add_parser(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command(
        sub,
        "dev",
        cmd_dev,
        "run everything in one process with nothing else installed: worker, jobs, HTTP API, a mail server",
    )
    p.add_argument("--dir", default=".", help="where to keep outbox/, webhooks/ and .tidings/ (default: here)")
    p.add_argument("--host", default="127.0.0.1", help="the HTTP address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="the HTTP port (default 8000)")
    p.add_argument("--smtp-port", type=int, default=0, help="the embedded mail server's port (default: a free one)")
    p.add_argument("--demo", action="store_true", help="create three users and publish a sample tournament day")
