"""Probes for operators: /healthz (the process serves) and /readyz (it can reach what it needs)."""

from __future__ import annotations

from typing import Literal

import pika
import pika.exceptions
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from channels import switched_off
from dispatcher.amqp import local
from dispatcher.storage.db import database

from .state import api_state

router = APIRouter(tags=["health"])
PROBE_TIMEOUT = 3.0


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    database: str
    broker: str
    #: The registered channels TIDINGS_CHANNELS switches off (their deliveries are recorded as skipped).
    channels_off: list[str] = []


@router.get("/healthz", response_model=Health, summary="The process serves")
def healthz() -> Health:
    return Health(status="ok")


def _database() -> str:
    try:
        with database.connection_context():
            database.execute_sql("SELECT 1")
    except Exception as e:  # noqa: BLE001 - any failure means not ready; say which
        return f"unreachable ({type(e).__name__})"
    return "ok"


def _broker(url: str) -> str:
    if local.installed() is not None:
        return "ok (embedded: no broker)"
    parameters = pika.URLParameters(url)
    parameters.socket_timeout = parameters.blocked_connection_timeout = PROBE_TIMEOUT
    parameters.stack_timeout = PROBE_TIMEOUT
    parameters.connection_attempts = 1
    try:
        pika.BlockingConnection(parameters).close()
    except (pika.exceptions.AMQPError, OSError) as e:
        return f"unreachable ({type(e).__name__})"
    return "ok"


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="The database and the broker are reachable",
    responses={503: {"model": Readiness, "description": "what is unreachable"}},
)
def readyz(request: Request) -> JSONResponse:
    settings = api_state(request).settings
    readiness = Readiness(
        database=_database(), broker=_broker(settings.broker_url), channels_off=switched_off(settings)
    )
    ready = readiness.database == "ok" and readiness.broker.startswith("ok")
    return JSONResponse(readiness.model_dump(), status_code=200 if ready else 503)
