"""The notification catalog: which types exist, their default channels, criticality.

The catalog is data (templates/catalog.toml), so adding a type needs no code.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from dispatcher.core.errors import ConfigError

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
    #: None: any producer may publish it; else only these RabbitMQ users (and TIDINGS_COMMAND_USERS).
    publishers: frozenset[str] | None = None


def without_personal(data: dict[str, Any], personal: tuple[str, ...]) -> dict[str, Any]:
    """``data`` without its personal keys: a plain key wherever it stands, at any depth (in lists too);
    a dotted path ("payout.account.iban") at exactly that place."""
    plain = frozenset(key for key in personal if "." not in key)
    paths = [tuple(path.split(".")) for path in personal if "." in path]
    return _strip(data, plain, paths)


def _strip(value: Any, plain: frozenset[str], paths: list[tuple[str, ...]]) -> Any:
    if isinstance(value, list):
        return [_strip(item, plain, paths) for item in value]
    if not isinstance(value, dict):
        return value
    ending_here = {path[0] for path in paths if len(path) == 1}
    return {
        key: _strip(item, plain, [path[1:] for path in paths if len(path) > 1 and path[0] == key])
        for key, item in value.items()
        if key not in plain and key not in ending_here
    }


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
        raise ConfigError(f'the catalog {path} has no [types."..."] entries')
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
    unknown = set(entry) - {
        "description",
        "channels",
        "critical",
        "required",
        "personal",
        "internal",
        "restricted",
        "publishers",
    }
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    channels = entry.get("channels", ["in_app"])
    if not isinstance(channels, list) or not all(c in PREFERENCE_CHANNELS for c in channels):
        raise ConfigError(f"{where}: channels must be a list drawn from {PREFERENCE_CHANNELS}")
    flags = {key: entry.get(key, False) for key in ("critical", "internal", "restricted")}
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be true or false")
    lists = {}
    for key in ("required", "personal", "publishers"):
        value = entry.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{where}: {key} must be a list of strings (none empty)")
        lists[key] = tuple(value)
    if any(not all(part for part in path.split(".")) for path in lists["personal"]):
        raise ConfigError(f'{where}: personal holds keys of data or dotted paths into it, such as "payout.iban"')
    publishers = frozenset(lists.pop("publishers"))
    restricted = flags.pop("restricted") or bool(publishers)
    return NotificationType(
        name=name,
        description=str(entry.get("description", "")),
        channels=frozenset(channels),
        publishers=publishers if restricted else None,
        **flags,
        **lists,
    )
