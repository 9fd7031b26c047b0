"""The notification catalog: which types exist, their default channels, criticality.

The catalog is data (templates/catalog.toml), so adding a type needs no code. Which channels
exist is not the catalog's to say: the caller passes the registered channels' classes
(``load_catalog(..., channels=channels.channel_classes())``), because channels/ is built on this
layer and cannot be imported from it.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from dispatcher.core.errors import ConfigError

TEMPLATE_FILES = ("subject.txt", "body.txt", "body.html")
CONTROL_PREFIX = "tidings."
#: The type of a preference that applies to every type.
WILDCARD = "*"


class ChannelFacts(Protocol):
    """What the catalog and the control commands know of a channel: channels.base.Channel states it."""

    @property
    def digests(self) -> bool: ...

    @property
    def catalog_default(self) -> bool: ...


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
    stripped: dict[str, Any] = _strip(data, plain, paths)
    return stripped


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
    #: The registered channels it was loaded with, by name, in registry order.
    channels: Mapping[str, ChannelFacts] = dataclasses.field(default_factory=dict, compare=False)

    def get(self, name: str) -> NotificationType | None:
        return self.types.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self.types

    def names(self) -> list[str]:
        return sorted(self.types)

    def public_names(self) -> list[str]:
        """The types producers may publish."""
        return sorted(name for name, kind in self.types.items() if not kind.internal)


def load_catalog(path: Path, templates_dir: Path | None = None, *, channels: Mapping[str, ChannelFacts]) -> Catalog:
    """Read and check a catalog file; raise ConfigError naming the bad entry.

    ``channels``: the registered channels (``channels.channel_classes()``). A type may list only
    these, and one that lists none gets those whose ``catalog_default`` is true. They are required:
    a catalog read without them could not tell a misspelt channel from a real one.
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read the catalog {path}: {e}") from None
    entries = raw.get("types")
    if not isinstance(entries, dict) or not entries:
        raise ConfigError(f'the catalog {path} has no [types."..."] entries')
    types = {}
    for name, entry in entries.items():
        types[name] = _parse_entry(path, name, entry, channels)
        if templates_dir is not None:
            for file in TEMPLATE_FILES:
                if not (templates_dir / name / file).is_file():
                    raise ConfigError(f"catalog type {name!r} has no template {templates_dir / name / file}")
    return Catalog(types=types, channels=dict(channels))


def _channels(where: str, entry: dict[str, Any], known: Mapping[str, ChannelFacts]) -> frozenset[str]:
    listed = entry.get("channels", [name for name, facts in known.items() if facts.catalog_default])
    if not isinstance(listed, list) or not all(isinstance(c, str) and c in known for c in listed):
        raise ConfigError(f"{where}: channels must be a list drawn from {tuple(known)}")
    return frozenset(listed)


def _parse_entry(path: Path, name: str, entry: object, known: Mapping[str, ChannelFacts]) -> NotificationType:
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
    channels = _channels(where, entry, known)
    flags: dict[str, bool] = {}
    for key in ("critical", "internal", "restricted"):
        value = entry.get(key, False)
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be true or false")
        flags[key] = value
    lists: dict[str, tuple[str, ...]] = {}
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
        channels=channels,
        critical=flags["critical"],
        internal=flags["internal"],
        required=lists["required"],
        personal=lists["personal"],
        publishers=publishers if restricted else None,
    )
