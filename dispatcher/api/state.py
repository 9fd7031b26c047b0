"""What the app's handlers share: the settings, the catalog and the process-wide helpers."""

from __future__ import annotations

import dataclasses

from fastapi import Request

from dispatcher.amqp import local
from dispatcher.core.catalog import Catalog
from dispatcher.core.settings import Settings

from .publishing import PublisherPool


@dataclasses.dataclass
class ApiState:
    settings: Settings
    catalog: Catalog
    #: Connections to the events exchange, opened when first needed (POST /v1/events); closed on shutdown.
    #: In the embedded mode, the local bus, which ingests the event before answering.
    publishers: PublisherPool | local.LocalBus = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        bus = local.installed()
        self.publishers = bus if bus is not None else PublisherPool(self.settings.broker_url, self.settings.exchange)


def api_state(request: Request) -> ApiState:
    """The state create_app stored on the app."""
    state: ApiState = request.app.state.tidings
    return state
