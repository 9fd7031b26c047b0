"""The OpenAPI document as a file: docs/openapi.json is this, and a test keeps the two in sync."""

from __future__ import annotations

import json

from dispatcher.core.catalog import Catalog
from dispatcher.core.settings import Settings

from .app import create_app


def openapi_text(settings: Settings, catalog: Catalog) -> str:
    """The app's OpenAPI 3.1 document, as JSON text with sorted keys (stable to diff)."""
    return json.dumps(create_app(settings, catalog).openapi(), indent=2, sort_keys=True) + "\n"
