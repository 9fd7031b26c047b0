"""What every `tidings` command shares: settings, the catalog, the database, and output."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from typing import Any

from channels import channel_classes
from dispatcher.core import clock
from dispatcher.core.authority import OPERATOR
from dispatcher.core.catalog import Catalog, load_catalog
from dispatcher.core.events import CloudEvent
from dispatcher.core.settings import Settings
from dispatcher.pipeline.ingest import ingest_event
from dispatcher.storage.db import init_database
from dispatcher.storage.migrate import migrate

CLI_SOURCE = "/tidings/cli"


class Context:
    """What every command needs: settings, the catalog, and the database."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.catalog: Catalog = load_catalog(settings.catalog_path, settings.templates_dir, channels=channel_classes())
        self._database_ready = False

    def database(self) -> None:
        if not self._database_ready:
            init_database(self.settings.database_url)
            migrate()
            self._database_ready = True

    def command(self, type_name: str, data: dict[str, Any]) -> str:
        """Apply a control command locally through the worker's code, with an operator's authority:
        it always applies, whatever time a stored record claims."""
        self.database()
        now = clock.now().replace(tzinfo=dt.UTC)
        event = CloudEvent(id=str(uuid.uuid4()), source=CLI_SOURCE, type=type_name, data=data, time=now)
        return ingest_event(event, self.catalog, [], sender=OPERATOR).outcome


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
