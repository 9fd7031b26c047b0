"""Fixtures: databases (SQLite and PostgreSQL), a real SMTP server, real RabbitMQ deployments."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import dramatiq
import dramatiq.broker
import pika
import psycopg2
import pytest
from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker

from channels import channel_classes
from dispatcher.core.catalog import Catalog, load_catalog
from dispatcher.core.settings import PROJECT_ROOT, Settings
from dispatcher.runtime.broker import build_broker
from dispatcher.storage.db import database, init_database
from dispatcher.storage.migrate import migrate
from dispatcher.storage.models import ALL_MODELS
from tests.support.deployment import Deployment
from tests.support.services import POSTGRES_ADMIN_DSN, RABBITMQ_API_URL, RABBITMQ_URL, require
from tests.support.smtp import SmtpServer
from tests.support.web import WebServer

# Tests must never pick up an operator's TIDINGS_* settings.
for _key in [k for k in os.environ if k.startswith("TIDINGS_")]:
    del os.environ[_key]


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog(
        PROJECT_ROOT / "templates" / "catalog.toml", PROJECT_ROOT / "templates", channels=channel_classes()
    )


@contextlib.contextmanager
def _new_postgres_database(prefix: str) -> Iterator[str]:
    """Create an empty PostgreSQL database; drop it (closing our connections) afterwards."""
    require("PostgreSQL", "127.0.0.1", 5432)
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(POSTGRES_ADMIN_DSN)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        if database.obj is not None:
            database.close()
            if hasattr(database.obj, "close_all"):
                database.obj.close_all()
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database of this test session's own, for the storage tests."""
    with _new_postgres_database("tidings_test") as url:
        yield url


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """An empty PostgreSQL database for one test (a worker process migrates it)."""
    with _new_postgres_database("tidings_e2e") as url:
        yield url


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


@pytest.fixture
def rabbitmq_api(rabbitmq: str) -> str:
    """The URL of RabbitMQ's management API (TIDINGS_RABBITMQ_API_URL)."""
    require("RabbitMQ's management API", "127.0.0.1", 15672)
    return RABBITMQ_API_URL


@pytest.fixture
def deployment(tmp_path: Path, rabbitmq: str, smtp_server: SmtpServer) -> Iterator[Deployment]:
    deployment = Deployment(tmp_path, rabbitmq, smtp_server.port)
    yield deployment
    deployment.teardown()


@pytest.fixture
def running(deployment: Deployment) -> Deployment:
    """A deployment with one worker process (4 threads) up and ready, logging JSON lines."""
    deployment.configure(TIDINGS_LOG_FORMAT="json")
    deployment.worker().start()
    deployment.use_database()
    return deployment


sys.path.insert(0, str(PROJECT_ROOT))


# --- dramatiq on its StubBroker (in the style of dramatiq's own test suite) ------------------------------------


@pytest.fixture
def stub_settings(sqlite_db: str) -> Settings:
    """Settings for actors on the StubBroker: the test's SQLite database, quick retries."""
    return Settings(database_url=sqlite_db, namespace="t", retry_max=3, retry_min_backoff=0.05, retry_max_backoff=0.1)


@pytest.fixture
def stub_broker(stub_settings: Settings) -> Iterator[StubBroker]:
    """A StubBroker with Tidings' middleware, as build_broker makes it; declare actors on it in the test."""
    previous = dramatiq.broker.global_broker  # get_broker() would make a RabbitMQ broker when none is set
    broker = build_broker(stub_settings, StubBroker())
    broker.emit_after("process_boot")
    dramatiq.set_broker(broker)
    yield broker
    broker.flush_all()
    broker.close()
    dramatiq.broker.global_broker = previous


@pytest.fixture
def stub_worker(stub_broker: StubBroker) -> Iterator[Worker]:
    """A dramatiq worker with two threads on every queue of the stub broker."""
    worker = Worker(stub_broker, worker_timeout=100, worker_threads=2)
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def web(request: pytest.FixtureRequest, deployment: Deployment) -> Iterator[WebServer]:
    """The web process on the deployment's database, SQLite or a fresh PostgreSQL one; this process uses it too."""
    if request.param == "postgresql":
        deployment.configure(TIDINGS_DATABASE_URL=request.getfixturevalue("fresh_postgres_url"))
    with deployment.web().start() as server:
        deployment.use_database()
        migrate()  # done by the web process already: this only waits for it
        yield server


@pytest.fixture
def sqlite_web(deployment: Deployment) -> Iterator[WebServer]:
    """The web process on SQLite only, for what does not depend on the database."""
    with deployment.web().start() as server:
        deployment.use_database()
        migrate()
        yield server


@pytest.fixture
def announced(rabbitmq: str) -> Iterator[tuple[str, Callable[[], list[dict]]]]:
    """An exchange of this test's own with a queue bound to ranking.changed; yields (exchange, read): point
    TIDINGS_EXCHANGE at it, and read() gives the events published there since the last read."""
    exchange = f"announced_{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq))
    channel = connection.channel()
    channel.exchange_declare(exchange, exchange_type="topic", durable=True)
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, exchange, routing_key="ranking.changed")

    def read() -> list[dict]:
        bodies = []
        while (message := channel.basic_get(queue, auto_ack=True))[0] is not None:
            bodies.append(json.loads(message[2]))
        return bodies

    yield exchange, read
    channel.exchange_delete(exchange)
    connection.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Keep each phase's report on the test (``item.rep_call``): a finaliser can tell that the test failed
    (tests/support/browser.py keeps a screenshot of a failing browser test)."""
    report: pytest.TestReport = yield
    setattr(item, f"rep_{report.when}", report)
    return report
