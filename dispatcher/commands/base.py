"""One control command to apply: what every command handler receives."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from dispatcher.core.authority import Sender
from dispatcher.core.catalog import Catalog


@dataclasses.dataclass(frozen=True)
class Command:
    """A command's data, its time (naive UTC), the catalog, who sent it and from which source."""

    data: dict[str, Any]
    changed_at: dt.datetime
    catalog: Catalog
    sender: Sender
    source: str
