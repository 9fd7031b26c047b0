"""Match results as events carry them (``data.participants`` of match.completed): checked here, in core,
because the contract rejects a malformed result at admission; the rankings ledger records them."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

from dispatcher.core.errors import InvalidEvent

MAX_PARTICIPANTS = 1000
MAX_ID_LENGTH = 255
#: The series lengths a match.completed may name in ``best_of``.
SERIES_LENGTHS = (1, 3, 5, 7)


@dataclasses.dataclass(frozen=True)
class Placing:
    """One team's line in one match."""

    team_id: str
    score: float
    placement: int
    kills: int
    team_name: str | None = None


def parse_participants(value: object) -> tuple[Placing, ...]:
    """``data.participants`` checked, or InvalidEvent saying which entry is wrong and why."""
    if not isinstance(value, list) or not value:
        raise InvalidEvent("data.participants must be a non-empty list of {team_id, score, placement, kills}")
    if len(value) > MAX_PARTICIPANTS:
        raise InvalidEvent(f"data.participants has {len(value)} entries, over {MAX_PARTICIPANTS}")
    placings: list[Placing] = []
    seen: set[str] = set()
    for index, entry in enumerate(value):
        where = f"data.participants[{index}]"
        if not isinstance(entry, dict):
            raise InvalidEvent(f"{where} must be an object with team_id, score, placement and kills")
        team_id = check_identifier(entry.get("team_id"), f"{where}.team_id")
        if team_id in seen:
            raise InvalidEvent(f"{where}.team_id {team_id!r} appears twice in data.participants")
        seen.add(team_id)
        score, placement, kills = entry.get("score"), entry.get("placement"), entry.get("kills")
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise InvalidEvent(f"{where}.score must be a number")
        if isinstance(placement, bool) or not isinstance(placement, int) or placement < 1:
            raise InvalidEvent(f"{where}.placement must be an integer of 1 or more")
        if isinstance(kills, bool) or not isinstance(kills, int) or kills < 0:
            raise InvalidEvent(f"{where}.kills must be an integer of 0 or more")
        name = entry.get("team_name")
        if name is not None and not isinstance(name, str):
            raise InvalidEvent(f"{where}.team_name must be a string")
        placings.append(Placing(team_id, score, placement, kills, name or None))
    return tuple(placings)


def check_identifier(value: object, what: str) -> str:
    """``value`` if it is an id string of 1 to MAX_ID_LENGTH characters, else InvalidEvent naming ``what``."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LENGTH:
        raise InvalidEvent(f"{what} must be a string of 1 to {MAX_ID_LENGTH} characters")
    return value


def check_best_of(value: object) -> int:
    """``data.best_of``: one of SERIES_LENGTHS."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in SERIES_LENGTHS:
        raise InvalidEvent(f"data.best_of must be one of {', '.join(map(str, SERIES_LENGTHS))}")
    return value


#: Keys of ``data`` checked per type by the contract, beyond the catalog's required keys.
DATA_CHECKS: dict[str, dict[str, Callable[[object], object]]] = {
    "match.completed": {
        "participants": parse_participants,
        "series_id": functools.partial(check_identifier, what="data.series_id"),
        "best_of": check_best_of,
        "forfeit": functools.partial(check_identifier, what="data.forfeit"),
    }
}
