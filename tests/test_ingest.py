"""ingest_event: one event, recorded once, fanned out into deliveries."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest

from dispatcher.core import clock
from dispatcher.core.catalog import Catalog
from dispatcher.core.errors import InvalidCommand
from dispatcher.core.events import CloudEvent
from dispatcher.pipeline.delivery import claim
from dispatcher.pipeline.ingest import ingest_event
from dispatcher.storage.models import Delivery, DeliveryStatus, Event, Preference, Subscription, User
from tests.support.events import invite as invite_data
from tests.support.events import parsed_event

CHANNELS = ["in_app", "email"]
T0 = dt.datetime(2026, 5, 9, 12, 0)
_ids = itertools.count()


def invite(
    *,
    recipients: list[str] | None = None,
    topic: str | None = None,
    event_id: str | None = None,
    source: str = "/teams",
) -> CloudEvent:
    """Ada invites ``recipients`` to Owls, or the subscribers of ``topic``: each routing key only where given."""
    data = invite_data(recipients, team_name="Owls", inviter_name="Ada", **({} if topic is None else {"topic": topic}))
    if recipients is None:
        del data["recipients"]
    time = dt.datetime(2026, 5, 9, 11, 0, tzinfo=dt.UTC)
    return parsed_event("team.invite.sent", data, id=event_id or f"evt-{next(_ids)}", source=source, time=time)


def deliveries() -> set[tuple[str, str]]:
    return {(d.user_id, d.channel) for d in Delivery.select()}


def subscribe(topic: str, *user_ids: str) -> None:
    for user_id in user_ids:
        Subscription.create(topic=topic, user_id=user_id, active=True, changed_at=T0)


def test_an_event_creates_one_pending_delivery_per_recipient_per_default_channel(db: str, catalog: Catalog) -> None:
    # given
    event = invite(recipients=["u1", "u2"])

    # when
    with clock.use_clock(lambda: T0):
        result = ingest_event(event, catalog, CHANNELS)

    # then
    assert result.outcome == "accepted"
    assert result.recipients == 2
    assert deliveries() == {("u1", "in_app"), ("u1", "email"), ("u2", "in_app"), ("u2", "email")}
    rows = list(Delivery.select())
    assert all(d.status == DeliveryStatus.PENDING and d.attempts == 0 and d.created_at == T0 for d in rows)
    assert sorted(result.to_enqueue) == sorted((d.id, d.channel) for d in rows)


def test_the_event_itself_is_recorded(db: str, catalog: Catalog) -> None:
    # given
    event = invite(recipients=["u1"], event_id="evt-recorded")

    # when
    with clock.use_clock(lambda: T0):
        ingest_event(event, catalog, CHANNELS)

    # then
    row = Event.get()
    assert (row.source, row.event_id, row.type) == ("/teams", "evt-recorded", "team.invite.sent")
    assert row.data == event.data
    assert row.time == dt.datetime(2026, 5, 9, 11, 0)
    assert row.received_at == T0


def test_only_the_offered_channels_get_deliveries(db: str, catalog: Catalog) -> None:
    # given
    event = invite(recipients=["u1", "u2"])

    # when
    result = ingest_event(event, catalog, ["in_app"])

    # then
    assert deliveries() == {("u1", "in_app"), ("u2", "in_app")}
    assert {channel for _, channel in result.to_enqueue} == {"in_app"}


def test_an_in_app_only_type_creates_no_email_deliveries(db: str, catalog: Catalog) -> None:
    # given
    event = parsed_event(
        "team.roster.changed",
        {"recipients": ["u1"], "team_name": "Owls", "player_name": "Bo", "change": "joined"},
        id="evt-roster",
        source="/teams",
    )

    # when
    ingest_event(event, catalog, CHANNELS)

    # then
    assert deliveries() == {("u1", "in_app")}


def test_the_same_source_and_id_again_is_a_duplicate_and_creates_nothing(db: str, catalog: Catalog) -> None:
    # given
    ingest_event(invite(recipients=["u1"], event_id="evt-1"), catalog, CHANNELS)
    before = {d.id for d in Delivery.select()}

    # when: redelivered, even with other recipients
    result = ingest_event(invite(recipients=["u1", "u2", "u3"], event_id="evt-1"), catalog, CHANNELS)

    # then
    assert result.outcome == "duplicate"
    assert {d.id for d in Delivery.select()} == before
    assert Event.select().count() == 1


def test_the_same_id_from_another_source_is_a_new_event(db: str, catalog: Catalog) -> None:
    # given
    ingest_event(invite(recipients=["u1"], event_id="evt-1", source="/teams"), catalog, CHANNELS)

    # when
    result = ingest_event(invite(recipients=["u1"], event_id="evt-1", source="/other-teams"), catalog, CHANNELS)

    # then
    assert result.outcome == "accepted"
    assert Event.select().count() == 2
    assert Delivery.select().count() == 4


def test_a_duplicate_returns_the_deliveries_never_attempted_so_a_lost_enqueue_heals(db: str, catalog: Catalog) -> None:
    # given: the first ingest committed, then crashed before enqueueing anything
    first = ingest_event(invite(recipients=["u1", "u2"], event_id="evt-1"), catalog, CHANNELS)

    # when
    again = ingest_event(invite(recipients=["u1", "u2"], event_id="evt-1"), catalog, CHANNELS)

    # then
    assert again.outcome == "duplicate"
    assert again.to_enqueue == first.to_enqueue
    assert len(again.to_enqueue) == 4


def test_a_duplicate_does_not_return_deliveries_already_attempted(db: str, catalog: Catalog) -> None:
    # given: one delivery is being sent, one was retried and is pending again, one finished
    first = ingest_event(invite(recipients=["u1", "u2"], event_id="evt-1"), catalog, CHANNELS)
    sending, retried, finished, untouched = first.to_enqueue
    assert claim(sending[0], "msg-a", stale_after=600)
    assert claim(retried[0], "msg-b", stale_after=600)
    Delivery.update(status=DeliveryStatus.PENDING, claimed_by=None).where(Delivery.id == retried[0]).execute()
    assert claim(finished[0], "msg-c", stale_after=600)
    Delivery.update(status=DeliveryStatus.SENT).where(Delivery.id == finished[0]).execute()

    # when
    again = ingest_event(invite(recipients=["u1", "u2"], event_id="evt-1"), catalog, CHANNELS)

    # then
    assert again.outcome == "duplicate"
    assert again.to_enqueue == [untouched]


def test_recipients_and_topic_subscribers_are_each_notified_once(db: str, catalog: Catalog) -> None:
    # given
    subscribe("team-42", "u2", "u3", "u4")
    Subscription.create(topic="team-42", user_id="u5", active=False, changed_at=T0)
    subscribe("team-7", "u6")

    # when
    result = ingest_event(invite(recipients=["u1", "u2", "u1"], topic="team-42"), catalog, ["in_app"])

    # then
    assert result.recipients == 4
    assert deliveries() == {("u1", "in_app"), ("u2", "in_app"), ("u3", "in_app"), ("u4", "in_app")}


def test_a_topic_without_subscribers_creates_no_deliveries(db: str, catalog: Catalog) -> None:
    # given
    event = invite(topic="nobody-here")

    # when
    result = ingest_event(event, catalog, CHANNELS)

    # then
    assert (result.outcome, result.recipients, result.to_enqueue) == ("accepted", 0, [])
    assert Delivery.select().count() == 0
    assert Event.select().count() == 1


def test_preferences_decide_the_channels_of_each_recipient(db: str, catalog: Catalog) -> None:
    # given
    Preference.create(user_id="u1", type="team.invite.sent", channel="email", enabled=False, changed_at=T0)
    Preference.create(user_id="u2", type="*", channel="in_app", enabled=False, changed_at=T0)

    # when
    ingest_event(invite(recipients=["u1", "u2", "u3"]), catalog, CHANNELS)

    # then
    assert deliveries() == {("u1", "in_app"), ("u2", "email"), ("u3", "in_app"), ("u3", "email")}


def test_a_critical_event_reaches_its_default_channels_despite_preferences(db: str, catalog: Catalog) -> None:
    # given
    Preference.create(user_id="u1", type="*", channel="email", enabled=False, changed_at=T0)
    Preference.create(user_id="u1", type="*", channel="in_app", enabled=False, changed_at=T0)
    event = parsed_event(
        "payment.verified",
        {"recipients": ["u1"], "amount": "9.99", "currency": "EUR", "reference": "R1"},
        id="evt-pay",
        source="/payments",
    )

    # when
    ingest_event(event, catalog, CHANNELS)

    # then
    assert deliveries() == {("u1", "in_app"), ("u1", "email")}


def test_many_recipients_are_inserted_in_batches(db: str, catalog: Catalog) -> None:
    # given
    users = [f"u{i}" for i in range(1200)]

    # when
    result = ingest_event(invite(recipients=users), catalog, ["in_app"])

    # then
    assert result.recipients == 1200
    assert Delivery.select().count() == 1200
    assert len(result.to_enqueue) == 1200


def command(data: dict[str, Any], *, event_id: str, at: dt.datetime) -> CloudEvent:
    return parsed_event("tidings.user.upsert", data, id=event_id, source="/accounts", time=at.replace(tzinfo=dt.UTC))


def test_a_control_command_is_applied_and_recorded(db: str, catalog: Catalog) -> None:
    # given
    event = command({"id": "u1", "name": "Ada"}, event_id="cmd-1", at=T0)

    # when
    result = ingest_event(event, catalog, CHANNELS)

    # then
    assert result.outcome == "applied"
    assert result.to_enqueue == []
    assert User.get(User.id == "u1").name == "Ada"
    assert Event.select().where(Event.type == "tidings.user.upsert").count() == 1
    assert Delivery.select().count() == 0


def test_a_redelivered_control_command_is_not_applied_again(db: str, catalog: Catalog) -> None:
    # given: two commands with the same time; the second one wins
    first = command({"id": "u1", "name": "First"}, event_id="cmd-1", at=T0)
    ingest_event(first, catalog, CHANNELS)
    ingest_event(command({"id": "u1", "name": "Second"}, event_id="cmd-2", at=T0), catalog, CHANNELS)

    # when: the first is redelivered
    result = ingest_event(first, catalog, CHANNELS)

    # then
    assert result.outcome == "duplicate"
    assert User.get(User.id == "u1").name == "Second"
    assert Event.select().count() == 2


def test_a_stale_control_command_is_recorded_as_stale(db: str, catalog: Catalog) -> None:
    # given
    ingest_event(
        command({"id": "u1", "name": "New"}, event_id="cmd-new", at=T0 + dt.timedelta(hours=1)), catalog, CHANNELS
    )

    # when
    result = ingest_event(command({"id": "u1", "name": "Old"}, event_id="cmd-old", at=T0), catalog, CHANNELS)

    # then
    assert result.outcome == "stale"
    assert User.get(User.id == "u1").name == "New"


def test_an_invalid_control_command_leaves_no_trace(db: str, catalog: Catalog) -> None:
    # given
    event = command({"id": "u1", "email": "not an address"}, event_id="cmd-bad", at=T0)

    # when
    with pytest.raises(InvalidCommand, match="is not a mail address"):
        ingest_event(event, catalog, CHANNELS)

    # then: nothing is recorded, so a fixed redelivery would not be taken for a duplicate
    assert Event.select().count() == 0
    assert User.select().count() == 0
