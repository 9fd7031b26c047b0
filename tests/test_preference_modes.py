"""A preference item changes only what it names: a mode set alone never switches a channel on.

Through the command (tidings.preferences.set, as the bus, the CLI and the API apply it) to what routing
then plans for the shipped catalog's types.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest

from channels import channel_names
from dispatcher.commands.registry import apply_command
from dispatcher.core.catalog import Catalog
from dispatcher.core.errors import InvalidCommand
from dispatcher.pipeline.routing import plan_deliveries
from dispatcher.storage.models import DeliveryStatus, Preference
from tests.support.events import parsed_event

T0 = dt.datetime(2026, 5, 9, 12, 0, tzinfo=dt.UTC)
NOW = T0.replace(tzinfo=None)
_ids = itertools.count()
#: The README's digest example.
DIGEST_EVERYTHING = {"type": "*", "channel": "email", "mode": "digest"}


def set_preferences(catalog: Catalog, *items: dict[str, Any], minutes: int = 0) -> str:
    event = parsed_event(
        "tidings.preferences.set",
        {"user": "ana", "preferences": list(items)},
        id=f"prefs-{next(_ids)}",
        source="/accounts",
        time=T0 + dt.timedelta(minutes=minutes),
    )
    return apply_command(event, catalog)


def stored() -> dict[tuple[str, str], tuple[bool | None, str | None]]:
    return {(p.type, p.channel): (p.enabled, p.mode) for p in Preference.select().where(Preference.user_id == "ana")}


def email_plan(catalog: Catalog, type_name: str) -> str:
    """What routing plans for ana's email of ``type_name``: "off", "immediate" or "digest"."""
    plan = [
        p for p in plan_deliveries(catalog.types[type_name], ["ana"], channel_names(), now=NOW) if p.channel == "email"
    ]
    if not plan:
        return "off"
    return "digest" if plan[0].status == DeliveryStatus.DIGEST else "immediate"


def test_a_mode_alone_for_every_type_stores_no_choice_of_enabled(db: str, catalog: Catalog) -> None:
    # when
    outcome = set_preferences(catalog, DIGEST_EVERYTHING)
    # then
    assert outcome == "applied"
    assert stored() == {("*", "email"): (None, "digest")}


def test_a_mode_alone_for_every_type_makes_digests_of_default_emails_and_enables_no_other_type(
    db: str, catalog: Catalog
) -> None:
    # when
    set_preferences(catalog, DIGEST_EVERYTHING)
    # then types that email by default go to the digest; in-app-only types still send no email
    assert email_plan(catalog, "match.completed") == "digest"
    assert email_plan(catalog, "team.invite.sent") == "digest"
    assert email_plan(catalog, "match.scheduled") == "off"
    assert email_plan(catalog, "ranking.changed") == "off"
    # and critical types are never held for a digest
    assert email_plan(catalog, "payout.received") == "immediate"


def test_a_mode_alone_leaves_the_stored_enabled_as_it_was(db: str, catalog: Catalog) -> None:
    # given email switched off for every type, then on for one
    set_preferences(catalog, {"type": "*", "channel": "email", "enabled": False})
    set_preferences(catalog, {"type": "match.scheduled", "channel": "email", "enabled": True})
    # when a later item sets only the mode for every type
    set_preferences(catalog, DIGEST_EVERYTHING, minutes=1)
    # then the switch stays off where it was off, on where it was on
    assert stored() == {("*", "email"): (False, "digest"), ("match.scheduled", "email"): (True, None)}
    assert email_plan(catalog, "match.completed") == "off"
    assert email_plan(catalog, "match.scheduled") == "digest"


def test_enabled_alone_leaves_the_stored_mode_as_it_was(db: str, catalog: Catalog) -> None:
    # given a type's email in the digest
    set_preferences(catalog, {"type": "match.completed", "channel": "email", "enabled": True, "mode": "digest"})
    # when it is switched off and on again without a mode (the CLI's `prefs set`, an unsubscribe link)
    set_preferences(catalog, {"type": "match.completed", "channel": "email", "enabled": False}, minutes=1)
    set_preferences(catalog, {"type": "match.completed", "channel": "email", "enabled": True}, minutes=2)
    # then the digest mode is still there
    assert stored() == {("match.completed", "email"): (True, "digest")}
    assert email_plan(catalog, "match.completed") == "digest"


def test_a_type_switched_on_without_a_mode_follows_the_wildcards_mode(db: str, catalog: Catalog) -> None:
    # given digests for every type
    set_preferences(catalog, DIGEST_EVERYTHING)
    # when an in-app-only type's email is switched on
    set_preferences(catalog, {"type": "ranking.changed", "channel": "email", "enabled": True}, minutes=1)
    # then it joins the digest too
    assert email_plan(catalog, "ranking.changed") == "digest"


def test_enabled_and_mode_together_for_every_type_switch_email_on_everywhere(db: str, catalog: Catalog) -> None:
    # when the item says enabled as well
    set_preferences(catalog, {**DIGEST_EVERYTHING, "enabled": True})
    # then that is what it asks for: email for every type, in the digest
    assert email_plan(catalog, "match.scheduled") == "digest"
    assert email_plan(catalog, "ranking.changed") == "digest"


def test_an_older_mode_alone_is_stale_against_a_newer_setting(db: str, catalog: Catalog) -> None:
    # given
    set_preferences(catalog, {"type": "*", "channel": "email", "enabled": False}, minutes=5)
    # when
    outcome = set_preferences(catalog, DIGEST_EVERYTHING, minutes=1)
    # then
    assert outcome == "stale"
    assert stored() == {("*", "email"): (False, None)}


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"type": "*", "channel": "email"}, "each preference sets enabled, mode or both"),
        ({"type": "*", "channel": "email", "mode": None}, 'mode must be "immediate", or "digest"'),
        ({"type": "*", "channel": "email", "enabled": None}, "enabled must be true or false"),
        ({"type": "*", "channel": "in_app", "mode": "digest"}, 'or "digest" for the email channel'),
    ],
)
def test_an_item_that_sets_nothing_or_sets_null_is_refused(
    db: str, catalog: Catalog, item: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidCommand, match=message):
        set_preferences(catalog, item)
    assert Preference.select().count() == 0
