"""The app factory: ``uvicorn --factory dispatcher.api.app:create_app`` (the Procfile's web line).

Called with no arguments (by uvicorn), it reads the settings and the catalog and sets up logging
and the database, as the other entry points do. Tests and the embedded mode pass their own.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import peewee
import structlog
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.middleware.cors import CORSMiddleware

from dispatcher.amqp.bus import close_announcers
from dispatcher.core.catalog import Catalog
from dispatcher.core.settings import Settings
from dispatcher.runtime.broker import configure_process, load_configuration
from dispatcher.storage.db import database
from dispatcher.storage.migrate import migrate_when_free

from . import (
    deliveries,
    events,
    health,
    inbox,
    metrics,
    preferences,
    rankings,
    schedules,
    stream,
    topics,
    ui,
    unsubscribe,
    users,
    webhooks,
)
from .limits import BodyLimitMiddleware, RateLimitMiddleware, TokenBuckets
from .problems import document_problems, install_error_handlers
from .state import ApiState

API_VERSION = "1"
#: The routers, in the order the OpenAPI document lists them.
ROUTERS = (
    inbox.router,
    stream.router,
    preferences.router,
    unsubscribe.router,
    events.router,
    deliveries.router,
    schedules.router,
    users.router,
    topics.router,
    webhooks.router,
    rankings.router,
    ui.router,
    health.router,
    metrics.router,
)


def create_app(settings: Settings | None = None, catalog: Catalog | None = None) -> FastAPI:
    """The Tidings HTTP API. Without ``settings`` it configures the process from the environment."""
    if settings is None or catalog is None:
        loaded_settings, loaded_catalog = load_configuration()
        if settings is None:
            configure_process(loaded_settings)
            _migrate_if_reachable()
        settings, catalog = settings or loaded_settings, catalog or loaded_catalog
    app = FastAPI(
        title="Tidings",
        version=API_VERSION,
        summary=(
            "Notifications for your product: inbox, preferences, events, deliveries, schedules, webhooks, rankings."
        ),
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        lifespan=_lifespan,
    )
    app.state.tidings = ApiState(settings=settings, catalog=catalog)
    install_error_handlers(app)
    unsubscribe.hide_tokens_in_access_log()  # the token in its path is the authority
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    for router in ROUTERS:
        app.include_router(router)
    # Added last = runs first: the size cap and the rate limit answer before anything else works.
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_credentials=False,  # bearer tokens, not cookies
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
            max_age=600,
        )
    app.add_middleware(RateLimitMiddleware, buckets=TokenBuckets(settings.http_rate_limit))
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.http_max_body_bytes)
    return app


def _migrate_if_reachable() -> None:
    """Bring the schema up to date, as the workers do. A database that cannot be reached now does not stop
    the web process: /healthz answers, /readyz says what is down, and the requests that need it fail."""
    try:
        migrate_when_free()
    except peewee.OperationalError as e:
        structlog.get_logger("tidings.api").warning("database_unreachable_at_start", error=type(e).__name__)
    finally:
        database.close()


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """At shutdown: close the connections to the exchange and flush the inbox announcements."""
    yield
    state: ApiState = app.state.tidings
    state.publishers.close()
    close_announcers()


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes, servers=app.servers
        )
        app.openapi_schema = document_problems(document)
    return app.openapi_schema
