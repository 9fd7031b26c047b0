"""An isolated Tidings for one test or benchmark run: its own queues, exchange and database."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pika

from channels import REGISTRY
from dispatcher.core.settings import PROJECT_ROOT, Settings
from dispatcher.storage.db import database, init_database

from .services import free_port
from .web import WebServer
from .worker import WorkerProcess

#: The secret the deployment's user tokens are signed with (tests mint their own tokens with it).
USER_TOKEN_SECRET = "tests-user-token-secret-0123456789abcdef"


class Deployment:
    """One isolated Tidings: its own namespace, exchange, SQLite file and worker processes."""

    def __init__(self, tmp_path: Path, broker_url: str, smtp_port: int, **extra: str) -> None:
        self.namespace = f"t{uuid.uuid4().hex[:10]}"
        self.exchange = f"{self.namespace}_events"
        self.tmp_path = tmp_path
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")},
            "PYTHONPATH": str(PROJECT_ROOT),
            "TIDINGS_BROKER_URL": broker_url,
            "TIDINGS_NAMESPACE": self.namespace,
            "TIDINGS_EXCHANGE": self.exchange,
            "TIDINGS_DATABASE_URL": f"sqlite:///{tmp_path / 'tidings.db'}",
            "TIDINGS_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
            "TIDINGS_MAIL_FROM": "Tidings <noreply@tidings.test>",
            "TIDINGS_RETRY_MIN_BACKOFF": "0.2",
            "TIDINGS_RETRY_MAX_BACKOFF": "2",
            "TIDINGS_RETRY_MAX": "5",
            "TIDINGS_HTTP_PORT": str(free_port()),
            "TIDINGS_USER_TOKEN_SECRET": USER_TOKEN_SECRET,
            **extra,
        }
        self.settings = self._parse()
        self.workers: list[WorkerProcess] = []

    def _parse(self) -> Settings:
        return Settings.from_env({k: v for k, v in self.env.items() if k.startswith("TIDINGS_")})

    def configure(self, **env: str) -> None:
        """Change settings before any worker starts, e.g. configure(TIDINGS_DATABASE_URL=...)."""
        self.env.update(env)
        self.settings = self._parse()

    def worker(self, **options: int) -> WorkerProcess:
        worker = WorkerProcess(self.env, self.tmp_path / f"worker{len(self.workers)}.log", **options)
        self.workers.append(worker)
        return worker

    def web(self, **env: str) -> WebServer:
        """The web process on TIDINGS_HTTP_PORT, with ``env`` changed for it alone (not started):
        ``with deployment.web().start() as web:``."""
        return WebServer({**self.env, **env}, self.tmp_path / "web.log")

    def use_database(self) -> None:
        """Point this test process's models at the deployment's database."""
        init_database(self.settings.database_url)

    def dead_letters(self) -> list[bytes]:
        """The bodies in <namespace>.ingest.XQ, left there: read without acknowledging."""
        connection = pika.BlockingConnection(pika.URLParameters(self.env["TIDINGS_BROKER_URL"]))
        channel = connection.channel()
        bodies = []
        while (message := channel.basic_get(self.settings.queue("ingest") + ".XQ", auto_ack=False))[0]:
            bodies.append(message[2])
        connection.close()  # unacknowledged, they go back to the queue
        return bodies

    def queue_names(self) -> list[str]:
        """Every queue a deployment declares: ingest's, one per registered channel, maintenance; with .DQ and .XQ."""
        names = [self.settings.queue(q) for q in ("ingest", "ingest_retry", *REGISTRY, "maintenance")]
        return [n + suffix for n in names for suffix in ("", ".DQ", ".XQ")]

    def teardown(self) -> None:
        for worker in self.workers:
            worker.kill()
        connection = pika.BlockingConnection(pika.URLParameters(self.env["TIDINGS_BROKER_URL"]))
        channel = connection.channel()
        for name in self.queue_names():
            channel.queue_delete(name)
        channel.exchange_delete(self.exchange)
        channel.exchange_delete(f"{self.namespace}.inbox")  # the inbox feed's (dispatcher/amqp/inbox_feed.py)
        connection.close()
        if database.obj is not None and not database.is_closed():
            database.close()
