"""Fixtures: databases (SQLite and PostgreSQL), a real SMTP server, real RabbitMQ deployments."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import psycopg2
import pytest

from dispatcher.catalog import Catalog, load_catalog
from dispatcher.db import database, init_database
from dispatcher.migrate import migrate
from dispatcher.models import ALL_MODELS
from dispatcher.settings import PROJECT_ROOT, Settings

from tests.support.services import POSTGRES_ADMIN_DSN, RABBITMQ_URL, require
from tests.support.smtp import SmtpServer
from tests.support.worker import WorkerProcess

# Tests must never pick up an operator's TIDINGS_* settings.
for _key in [k for k in os.environ if k.startswith("TIDINGS_")]:
    del os.environ[_key]


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog(PROJECT_ROOT / "templates" / "catalog.toml", PROJECT_ROOT / "templates")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database of this test session's own, dropped at the end."""
    require("PostgreSQL", "127.0.0.1", 5432)
    name = f"tidings_test_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(POSTGRES_ADMIN_DSN)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    if not database.is_closed():
        database.close()
    if hasattr(database.obj, "close_all"):
        database.obj.close_all()
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, migrated database of each kind; yields its URL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'tidings.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    init_database(url)
    database.drop_tables(ALL_MODELS, safe=True)
    migrate()
    yield url
    if not database.is_closed():
        database.close()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[str]:
    """An empty, migrated SQLite database, for tests that need just one kind."""
    url = f"sqlite:///{tmp_path / 'tidings.db'}"
    init_database(url)
    migrate()
    yield url
    database.close()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def rabbitmq() -> str:
    require("RabbitMQ", "127.0.0.1", 5672)
    return RABBITMQ_URL


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
            **extra,
        }
        self.settings = Settings.from_env({k: v for k, v in self.env.items() if k.startswith("TIDINGS_")})
        self.workers: list[WorkerProcess] = []

    def worker(self, **options: int) -> WorkerProcess:
        worker = WorkerProcess(self.env, self.tmp_path / f"worker{len(self.workers)}.log", **options)
        self.workers.append(worker)
        return worker

    def use_database(self) -> None:
        """Point this test process's models at the deployment's database."""
        init_database(self.settings.database_url)

    def queue_names(self) -> list[str]:
        names = [self.settings.queue(q) for q in ("ingest", "in_app", "email", "maintenance")]
        return [n + suffix for n in names for suffix in ("", ".DQ", ".XQ")]

    def teardown(self) -> None:
        for worker in self.workers:
            worker.kill()
        connection = pika.BlockingConnection(pika.URLParameters(self.env["TIDINGS_BROKER_URL"]))
        channel = connection.channel()
        for name in self.queue_names():
            channel.queue_delete(name)
        channel.exchange_delete(self.exchange)
        connection.close()
        if not database.is_closed():
            database.close()


@pytest.fixture
def deployment(tmp_path: Path, rabbitmq: str, smtp_server: SmtpServer) -> Iterator[Deployment]:
    deployment = Deployment(tmp_path, rabbitmq, smtp_server.port)
    yield deployment
    deployment.teardown()


@pytest.fixture
def running(deployment: Deployment) -> Deployment:
    """A deployment with one worker process (4 threads) up and ready."""
    deployment.worker().start()
    deployment.use_database()
    return deployment


sys.path.insert(0, str(PROJECT_ROOT))
