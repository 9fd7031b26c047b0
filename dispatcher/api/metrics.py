"""``GET /metrics``: Prometheus' text format, for scrapers (docs/metrics.md); not in the OpenAPI document.

No authentication, like /healthz and the worker groups' metrics ports: the metrics carry no user, address
or URL, only counts by type, channel, outcome and queue. Keep the path off the public side of a proxy. The
state gauges are read at most once per ops.metrics.MAX_AGE seconds, so scrapers cannot load the database.
"""

from __future__ import annotations

import threading

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from dispatcher.ops.metrics import StateCollector, exposition

from .state import api_state

router = APIRouter(tags=["metrics"])
_lock = threading.Lock()


def _state(request: Request) -> StateCollector:
    with _lock:
        collector: StateCollector | None = getattr(request.app.state, "tidings_metrics", None)
        if collector is None:
            collector = StateCollector(api_state(request).settings)
            request.app.state.tidings_metrics = collector
        return collector


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    return Response(exposition(_state(request)), media_type=CONTENT_TYPE_LATEST)
