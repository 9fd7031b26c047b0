"""``tidings dev --demo``: three players, one team, and a tournament day, so every page has something in it.

Everything goes through the bus as a producer's events would (users, a topic, a webhook endpoint pointing
at the built-in receiver, then invites, a match scheduled, the three games of a best-of-3 final, a payout,
and what the rankings announce: the series decided, and the rank changes of each recompute). The ids are
fixed: a second ``--demo`` on the same directory adds nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from dispatcher.amqp.local import LocalBus
from dispatcher.amqp.publisher import build_event
from dispatcher.commands.endpoints import new_secret

SOURCE = "/tidings/dev/demo"
TEAM_TOPIC = "team:night-owls"
#: (id, name, email, timezone)
USERS = (
    ("ana", "Ana Lima", "ana@example.test", "Europe/Lisbon"),
    ("ben", "Ben Okafor", "ben@example.test", "Africa/Lagos"),
    ("chloe", "Chloé Martin", "chloe@example.test", "Europe/Paris"),
)
WEBHOOK_TYPES = ["match.*", "payout.*", "ranking.*", "team.*"]


def _result(match_id: str, winner: tuple[str, str, int], loser: tuple[str, str, int]) -> dict[str, Any]:
    """A match.completed's data: (team id, name, score) of each side."""
    return {
        "tournament_name": "Winter Cup",
        "tournament_id": "winter-cup",
        "match_id": match_id,
        "series_id": "winter-cup-final",  # the three games are a best of 3: Red Foxes win it 2-1
        "best_of": 3,
        "topic": TEAM_TOPIC,
        "winner_name": winner[1],
        "winner": winner[0],
        "participants": [
            {"team_id": team_id, "team_name": name, "score": score, "placement": placement, "kills": score * 5}
            for placement, (team_id, name, score) in enumerate((winner, loser), 1)
        ],
    }


NIGHT_OWLS, RED_FOXES = ("night-owls", "Night Owls"), ("red-foxes", "Red Foxes")


def demo_events(receiver_url: str, now: dt.datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The demo's commands and events in the order they are published (``now`` is timezone-aware): those
    before the first rankings recompute, and those after it (two more results, which change the ranks)."""
    at = now.replace(microsecond=0)
    starts_at = (at + dt.timedelta(hours=2)).replace(minute=0, second=0)
    first: list[tuple[str, dict[str, Any]]] = [
        *(
            ("tidings.user.upsert", {"id": user, "name": name, "email": email, "timezone": zone})
            for user, name, email, zone in USERS
        ),
        ("tidings.topic.subscribe", {"topic": TEAM_TOPIC, "user": "ana"}),
        ("tidings.topic.subscribe", {"topic": TEAM_TOPIC, "user": "ben"}),
        (
            "tidings.webhook.upsert",
            {"id": "demo", "url": receiver_url + "demo", "secret": new_secret(), "types": WEBHOOK_TYPES},
        ),
        (
            "team.invite.sent",
            {"recipients": ["chloe"], "team_name": "Night Owls", "inviter_name": "Ana Lima", "team_id": "night-owls"},
        ),
        ("team.invite.accepted", {"topic": TEAM_TOPIC, "team_name": "Night Owls", "member_name": "Chloé Martin"}),
        (
            "match.scheduled",
            {
                "tournament_name": "Winter Cup",
                "topic": TEAM_TOPIC,
                "opponent_name": "Red Foxes",
                "starts_at": starts_at.isoformat(),
            },
        ),
        ("match.completed", _result("wc-1", (*NIGHT_OWLS, 13), (*RED_FOXES, 9))),
    ]
    then: list[tuple[str, dict[str, Any]]] = [
        ("match.completed", _result("wc-2", (*RED_FOXES, 13), (*NIGHT_OWLS, 4))),
        ("match.completed", _result("wc-3", (*RED_FOXES, 13), (*NIGHT_OWLS, 11))),
        ("payout.received", {"recipients": ["ana"], "amount": "250.00", "currency": "EUR"}),
    ]
    events = [
        build_event(type_name, data, source=SOURCE, id=f"demo-{number}", time=at)
        for number, (type_name, data) in enumerate([*first, *then], 1)
    ]
    return events[: len(first)], events[len(first) :]


def publish_demo(bus: LocalBus, receiver_url: str, now: dt.datetime, recompute_rankings: Callable[[], None]) -> int:
    """Publish the demo on ``bus``, recomputing the rankings after the first result and at the end (the rank
    changes are announced as ranking.changed); how many events."""
    first, then = demo_events(receiver_url, now)
    for event in first:
        bus.publish(event)
    recompute_rankings()
    for event in then:
        bus.publish(event)
    recompute_rankings()
    return len(first) + len(then)
