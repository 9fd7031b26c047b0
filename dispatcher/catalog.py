"""The notification catalog: which types exist, their default channels, criticality.

The catalog is data (templates/catalog.toml), so adding a type needs no code.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

from .errors import ConfigError

#: Channel names a preference may name; the registry in channels/ says which are live.
PREFERENCE_CHANNELS = ("in_app", "email", "discord", "webhook")
TEMPLATE_FILES = ("subject.txt", "body.txt", "body.html")
CONTROL_PREFIX = "tidings."


@dataclasses.dataclass(frozen=True)
class NotificationType:
    """One catalog entry."""

    name: str
    description: str
    channels: frozenset[str]
    critical: bool = False
    required: tuple[str, ...] = ()
    personal: tuple[str, ...] = ()
    internal: bool = False  # made by Tidings itself (the daily digest): producers may not publish it


@dataclasses.dataclass(frozen=True)
class Catalog:
    """Every notification type Tidings knows, by name."""

    types: dict[str, NotificationType]

    def get(self, name: str) -> NotificationType | None:
        return self.types.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self.types

    def names(self) -> list[str]:
        return sorted(self.types)

    def public_names(self) -> list[str]:
        """The types producers may publish."""
        return sorted(name for name, kind in self.types.items() if not kind.internal)


def load_catalog(path: Path, templates_dir: Path | None = None) -> Catalog:
    """Read and check a catalog file; raise ConfigError naming the bad entry."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read the catalog {path}: {e}") from None
    entries = raw.get("types")
    if not isinstance(entries, dict) or not entries:
        raise ConfigError(f"the catalog {path} has no [types.\"...\"] entries")
    types = {}
    for name, entry in entries.items():
        types[name] = _parse_entry(path, name, entry)
        if templates_dir is not None:
            for file in TEMPLATE_FILES:
                if not (templates_dir / name / file).is_file():
                    raise ConfigError(f"catalog type {name!r} has no template {templates_dir / name / file}")
    return Catalog(types=types)


def _parse_entry(path: Path, name: str, entry: object) -> NotificationType:
    where = f"catalog {path}, type {name!r}"
    if name.startswith(CONTROL_PREFIX) or not name or "*" in name or "#" in name:
        raise ConfigError(f"{where}: the name is reserved or not a valid routing key")
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = set(entry) - {"description", "channels", "critical", "required", "personal", "internal"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    channels = entry.get("channels", ["in_app"])
    if not isinstance(channels, list) or not all(c in PREFERENCE_CHANNELS for c in channels):
        raise ConfigError(f"{where}: channels must be a list drawn from {PREFERENCE_CHANNELS}")
    critical, internal = entry.get("critical", False), entry.get("internal", False)
    if not isinstance(critical, bool) or not isinstance(internal, bool):
        raise ConfigError(f"{where}: critical must be true or false, and so must internal")
    lists = {}
    for key in ("required", "personal"):
        value = entry.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: {key} must be a list of strings")
        lists[key] = tuple(value)
    return NotificationType(
        name=name,
        description=str(entry.get("description", "")),
        channels=frozenset(channels),
        critical=critical,
        internal=internal,
        **lists,
    )
