"""``tidings dev``: the worker, the periodic jobs, the HTTP API and a mail server, in one process.

What it puts in place of the outside services:

- RabbitMQ: dramatiq's StubBroker, consumed by a Worker's threads here; events published (POST /v1/events,
  the rankings' announcements, the demo) are ingested before the publish returns (amqp/local.py), so the
  database always holds what was accepted, and a start enqueues again every delivery the last run had not
  finished (its messages were in memory);
- periodiq: a thread that sends the periodic actors on their cron specs (ticker.py);
- the SMTP server: aiosmtpd on loopback, keeping each email in ``<dir>/outbox`` (outbox.py);
- webhook receivers: the web process's own /dev/webhooks/in/<label> (receiver.py).

Its files live in one directory (the current one by default): ``outbox/``, ``webhooks/``, and ``.tidings/``
with the SQLite database and the secrets it made (an API key, the user-token and link-signing secrets),
kept so that a restart keeps them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import dramatiq
import structlog
import uvicorn
from dramatiq.brokers.stub import StubBroker

from dispatcher.amqp import local
from dispatcher.amqp.intake import CONTENT_TYPE, Envelope, Intake
from dispatcher.amqp.publisher import PublishError
from dispatcher.api.app import create_app
from dispatcher.core.catalog import Catalog
from dispatcher.core.errors import PermanentError
from dispatcher.core.settings import Settings
from dispatcher.jobs.maintenance import orphaned_deliveries
from dispatcher.runtime.actors import Actors, declare_actors
from dispatcher.runtime.broker import build_broker
from dispatcher.runtime.periodic import declare_periodic_jobs
from dispatcher.storage.db import database

from .outbox import OutboxServer
from .pages import DevState
from .pages import router as pages_router
from .receiver import PATH, Receiver
from .ticker import Ticker

log = structlog.get_logger("tidings.dev")

#: The scopes of the API key the embedded mode makes: all of them.
DEV_KEY_SCOPES = ("events", "commands", "read", "schedules", "users", "webhooks", "rankings", "overrides")
DEV_KEY_NAME = "dev"
WORKER_THREADS = 8


@dataclasses.dataclass(frozen=True)
class DevPaths:
    """Where the embedded mode keeps its files."""

    root: Path

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    @property
    def webhooks(self) -> Path:
        return self.root / "webhooks"

    @property
    def state(self) -> Path:
        return self.root / ".tidings"

    @property
    def database(self) -> Path:
        return self.state / "tidings.db"

    @property
    def secrets(self) -> Path:
        return self.state / "secrets.json"

    @property
    def api_key_file(self) -> Path:
        return self.state / "api-key"


def dev_secrets(paths: DevPaths) -> dict[str, str]:
    """The secrets of this directory's embedded mode, made on the first start (files readable by the owner only)."""
    paths.state.mkdir(parents=True, exist_ok=True)
    try:
        stored: dict[str, str] = json.loads(paths.secrets.read_text())
    except FileNotFoundError:
        stored = {}
    wanted = ("api_key", "user_token_secret", "secret_key")
    if not all(isinstance(stored.get(name), str) for name in wanted):
        stored = {name: stored.get(name) or secrets.token_urlsafe(32) for name in wanted}
        _write_private(paths.secrets, json.dumps(stored, indent=2))
    _write_private(paths.api_key_file, stored["api_key"] + "\n")
    return stored


def _write_private(path: Path, text: str) -> None:
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    os.replace(temporary, path)


def dev_environment(
    env: Mapping[str, str], paths: DevPaths, *, host: str, port: int, smtp_url: str, dev: Mapping[str, str]
) -> dict[str, str]:
    """The TIDINGS_* variables of the embedded mode: the environment's own, with what the mode needs.

    The mail server is always the embedded one; the database, the API keys and the secrets are the
    directory's unless the environment names its own; loopback is reachable (the built-in receiver).
    """
    merged = dict(env)
    merged["TIDINGS_SMTP_URL"] = smtp_url
    merged["TIDINGS_HTTP_HOST"] = host
    merged["TIDINGS_HTTP_PORT"] = str(port)
    merged.setdefault("TIDINGS_DATABASE_URL", f"sqlite:///{paths.database.resolve()}")
    merged.setdefault("TIDINGS_API_KEYS", f"{DEV_KEY_NAME}:{'+'.join(DEV_KEY_SCOPES)}:{dev['api_key']}")
    merged.setdefault("TIDINGS_USER_TOKEN_SECRET", dev["user_token_secret"])
    merged.setdefault("TIDINGS_SECRET_KEY", dev["secret_key"])
    merged.setdefault("TIDINGS_PUBLIC_URL", f"http://{_url_host(host)}:{port}")
    allowed = [n for n in merged.get("TIDINGS_ALLOW_PRIVATE_NETWORKS", "").split(",") if n.strip()]
    merged["TIDINGS_ALLOW_PRIVATE_NETWORKS"] = ",".join(dict.fromkeys([*allowed, "127.0.0.0/8", "::1/128"]))
    return merged


def _url_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host  # noqa: S104


def local_ingest(actors: Actors, settings: Settings) -> local.Ingest:
    """Ingest an event published in this process, in the caller's thread, through the ingest actor's code.

    An event refused raises its InvalidEvent; any other failure a PublishError (send it again: nothing
    was committed, and a second try of the same (source, id) is recognised).
    """
    intake = Intake(ingest_queue=settings.queue("ingest"), max_event_bytes=settings.max_event_bytes)

    def ingest(body: bytes, routing_key: str, publisher: str | None) -> None:
        envelope = Envelope(
            routing_key=routing_key, content_type=CONTENT_TYPE, publisher=publisher or settings.broker_user
        )
        kwargs = intake.wrap(body, envelope)["kwargs"]
        context = structlog.contextvars.get_contextvars()
        opened = database.connect(reuse_if_open=True)
        try:
            actors.ingest.fn(**kwargs)
        except PermanentError:
            raise
        except Exception as e:
            log.warning("local_ingest_failed", error=f"{type(e).__name__}: {e}")
            raise PublishError(f"ingesting failed ({type(e).__name__}); nothing was kept") from e
        finally:
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(**context)
            if opened and not database.is_closed():
                database.close()

    return ingest


@dataclasses.dataclass
class Embedded:
    """Everything ``tidings dev`` runs, built but not started (tests start and stop it themselves)."""

    settings: Settings
    catalog: Catalog
    paths: DevPaths
    smtp: OutboxServer
    broker: StubBroker
    actors: Actors
    ticker: Ticker
    server: uvicorn.Server
    worker: dramatiq.Worker | None = None

    @property
    def base_url(self) -> str:
        return f"http://{_url_host(self.settings.http_host)}:{self.settings.http_port}"

    def requeue_unfinished(self) -> int:
        """Enqueue what the last run had not finished: its messages were in memory."""
        with database.connection_context():
            pairs, due = orphaned_deliveries(stale_after=self.settings.stale_after)
        self.actors.enqueue_deliveries(pairs, due)
        if pairs:
            log.info("unfinished_deliveries_requeued", count=len(pairs))
        return len(pairs)

    def run(self) -> None:
        """Serve until SIGINT or SIGTERM (uvicorn's handlers), then stop everything."""
        self.smtp.start()
        self.requeue_unfinished()
        self.worker = dramatiq.Worker(self.broker, worker_threads=WORKER_THREADS, worker_timeout=100)
        self.worker.start()
        self.ticker.start()
        try:
            self.server.run()
        finally:
            self.ticker.stop()
            self.worker.stop(timeout=10_000)
            for channel in self.actors.channels.values():
                channel.close()
            self.smtp.stop()
            local.install(None)

    def wait_until_serving(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or self.server.should_exit:
                return False
            time.sleep(0.05)
        return True


def build(settings: Settings, catalog: Catalog, paths: DevPaths, smtp: OutboxServer) -> Embedded:
    """Declare the actors on a StubBroker, install the local bus, and make the web app with the /dev pages."""
    bus = local.LocalBus()
    local.install(bus)  # first: the channels take their announcer when made
    broker = build_broker(settings, StubBroker())
    dramatiq.set_broker(broker)
    actors = declare_actors(broker, settings, catalog)
    jobs = declare_periodic_jobs(broker, settings, catalog, actors)
    bus.ingest_with(local_ingest(actors, settings))
    periodic = [actor for actor in vars(jobs).values() if "periodic" in actor.options]
    app = create_app(settings, catalog)
    base = f"http://{_url_host(settings.http_host)}:{settings.http_port}"
    app.state.dev = DevState(outbox=paths.outbox, receiver=Receiver(paths.webhooks), receiver_url=base + PATH)
    app.include_router(pages_router)
    config = uvicorn.Config(
        app, host=settings.http_host, port=settings.http_port, log_config=None, timeout_graceful_shutdown=5
    )
    return Embedded(
        settings=settings,
        catalog=catalog,
        paths=paths,
        smtp=smtp,
        broker=broker,
        actors=actors,
        ticker=Ticker(periodic),
        server=uvicorn.Server(config),
    )


def when_serving(embedded: Embedded, target: Callable[[], None]) -> threading.Thread:
    """Run ``target`` once the server serves (the banner, the demo), in a thread of its own."""

    def wait_then_run() -> None:
        if embedded.wait_until_serving():
            target()

    thread = threading.Thread(target=wait_then_run, name="tidings-dev-start", daemon=True)
    thread.start()
    return thread
