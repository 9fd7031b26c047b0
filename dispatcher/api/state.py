"""What the app's handlers share: the settings, the catalog and the process-wide helpers."""

from __future__ import annotations

import dataclasses

from fastapi import Request

from dispatcher.core.catalog import Catalog
from dispatcher.core.settings import Settings


@dataclasses.dataclass
class ApiState:
    settings: Settings
    catalog: Catalog


def api_state(request: Request) -> ApiState:
    """The state create_app stored on the app."""
    state: ApiState = request.app.state.tidings
    return state
