"""Time: scheduled deliveries, the horizon, quiet hours, cancel, digests, cleanups; with an injected clock."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import threading

import pytest
from structlog.testing import capture_logs

from dispatcher.commands.registry import apply_command
from dispatcher.core import clock
from dispatcher.core.authority import Sender
from dispatcher.core.catalog import Catalog
from dispatcher.core.errors import InvalidEvent
from dispatcher.core.events import CloudEvent
from dispatcher.core.settings import Settings
from dispatcher.core.timing import check_schedule, check_time, digest_slot, quiet_until
from dispatcher.jobs.cleanup import cleanup
from dispatcher.jobs.digests import due_digests, make_digest
from dispatcher.jobs.maintenance import release_due_deliveries
from dispatcher.jobs.slots import claim_slot
from dispatcher.pipeline.ingest import ingest_event
from dispatcher.storage.models import Delivery, DeliveryStatus, Event, InboxItem, Rejection
from tests.support.events import invite, parsed_event

UTC = dt.UTC
_ids = itertools.count()


def at(moment: dt.datetime) -> clock.Clock:
    naive = moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
    return lambda: naive


def event(type_: str = "team.invite.sent", **data: object) -> CloudEvent:
    """An event to ana: an invitation to Owls unless ``type_`` says otherwise; ``data`` adds keys."""
    data = invite(team_name="Owls", **data) if type_ == "team.invite.sent" else {"recipients": ["ana"], **data}
    return parsed_event(type_, data, id=f"e{next(_ids)}")


def command(catalog: Catalog, type_: str, data: dict) -> str:
    """A command from an authorised publisher (TIDINGS_COMMAND_USERS)."""
    return apply_command(
        parsed_event(type_, data, id=f"c{next(_ids)}", source="/ops"),
        catalog,
        Sender(publisher="ops", privileged=True),
    )


def deliveries() -> dict[str, Delivery]:
    return {d.channel: d for d in Delivery.select()}


# --- pure time rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "expected_end"),
    [
        ("2026-05-09T23:30:00+02:00", "2026-05-10T07:00:00+02:00"),  # after the start, the window ends tomorrow
        ("2026-05-10T06:59:00+02:00", "2026-05-10T07:00:00+02:00"),  # after midnight, it ends today
        ("2026-05-10T07:00:00+02:00", None),
        ("2026-05-09T21:59:00+02:00", None),
    ],
)
def test_quiet_hours_spanning_midnight_end_at_the_next_local_end_time(local: str, expected_end: str | None) -> None:
    moment = dt.datetime.fromisoformat(local).astimezone(UTC).replace(tzinfo=None)
    end = quiet_until(moment, "Europe/Paris", "22:00", "07:00")
    assert end == (
        dt.datetime.fromisoformat(expected_end).astimezone(UTC).replace(tzinfo=None) if expected_end else None
    )


def test_quiet_hours_across_a_dst_change_end_at_the_local_time_of_the_new_offset() -> None:
    # the night Paris moves from +01:00 to +02:00 (2026-03-29 02:00 -> 03:00)
    moment = dt.datetime(2026, 3, 28, 23, 0)  # 00:00 local, +01:00
    assert quiet_until(moment, "Europe/Paris", "22:00", "07:00") == dt.datetime(2026, 3, 29, 5, 0)  # 07:00 +02:00


@pytest.mark.parametrize(
    ("utc", "slot"),
    [
        (dt.datetime(2026, 3, 7, 12, 59), None),  # 07:59 EST
        (dt.datetime(2026, 3, 7, 13, 0), dt.date(2026, 3, 7)),  # 08:00 EST (UTC-5)
        (dt.datetime(2026, 3, 8, 11, 59), None),  # 07:59 EDT, the day DST began
        (dt.datetime(2026, 3, 8, 12, 0), dt.date(2026, 3, 8)),  # 08:00 EDT (UTC-4)
        (dt.datetime(2026, 11, 1, 12, 59), None),  # 07:59 EST, the day DST ended
        (dt.datetime(2026, 11, 1, 13, 0), dt.date(2026, 11, 1)),
    ],
)
def test_the_digest_is_due_at_the_users_local_digest_time_on_each_side_of_dst(
    utc: dt.datetime, slot: dt.date | None
) -> None:
    assert digest_slot(utc, "America/New_York", "08:00") == slot


def test_a_deliver_at_beyond_the_horizon_is_rejected_with_the_reason() -> None:
    with clock.use_clock(at(dt.datetime(2026, 5, 9, 12, 0))):
        check_schedule(event(deliver_at="2027-05-09T11:59:00Z"), horizon=365 * 86400)
        with pytest.raises(InvalidEvent, match="more than 365 days ahead"):
            check_schedule(event(deliver_at="2027-05-09T12:01:00Z"), horizon=365 * 86400)


# --- scheduled deliveries -----------------------------------------------------------------------------


T0 = dt.datetime(2026, 5, 9, 12, 0)


def test_a_delivery_due_within_a_minute_is_enqueued_now_with_its_due_time(db: str, catalog: Catalog) -> None:
    with clock.use_clock(at(T0)):
        result = ingest_event(event(deliver_at="2026-05-09T12:00:03Z"), catalog, ["in_app"])
    [(delivery_id, _)] = result.to_enqueue
    assert result.due == {delivery_id: T0 + dt.timedelta(seconds=3)}
    assert deliveries()["in_app"].held is False


def test_a_delivery_due_later_is_held_in_the_database_and_released_just_before_its_time(
    db: str, catalog: Catalog
) -> None:
    # given
    with clock.use_clock(at(T0)):
        result = ingest_event(event(deliver_at="2026-05-09T13:00:00Z"), catalog, ["in_app"])
    # then
    assert result.to_enqueue == [] and deliveries()["in_app"].held is True
    with clock.use_clock(at(T0 + dt.timedelta(minutes=58))):
        assert release_due_deliveries() == ([], {})
    with clock.use_clock(at(T0 + dt.timedelta(minutes=59))):
        released, due = release_due_deliveries()
    assert released == [(deliveries()["in_app"].id, "in_app")]
    assert due == {deliveries()["in_app"].id: dt.datetime(2026, 5, 9, 13, 0)}


def test_a_deliver_at_in_the_past_means_now(db: str, catalog: Catalog) -> None:
    with clock.use_clock(at(T0)):
        result = ingest_event(event(deliver_at="2026-05-09T11:00:00Z"), catalog, ["in_app"])
    assert len(result.to_enqueue) == 1 and result.due == {}


def test_quiet_hours_hold_email_and_discord_but_not_in_app_nor_critical_types(db: str, catalog: Catalog) -> None:
    # given ana, in Paris, quiet from 22:00 to 07:00, who wants Discord too; it is 23:00 in Paris
    command(
        catalog,
        "tidings.user.upsert",
        {
            "id": "ana",
            "email": "ana@example.com",
            "timezone": "Europe/Paris",
            "quiet_start": "22:00",
            "quiet_end": "07:00",
            "discord_webhook_url": "https://discord.example/api/webhooks/1/T",
        },
    )
    command(
        catalog,
        "tidings.preferences.set",
        {"user": "ana", "preferences": [{"type": "*", "channel": "discord", "enabled": True}]},
    )
    night = dt.datetime(2026, 5, 9, 21, 0)  # 23:00 +02:00
    morning = dt.datetime(2026, 5, 10, 5, 0)  # 07:00 +02:00
    # when
    with clock.use_clock(at(night)):
        ingest_event(event(), catalog, ["in_app", "email", "discord"])
        ingest_event(
            event("payment.verified", amount="9.00", currency="EUR", reference="R1"),
            catalog,
            ["in_app", "email", "discord"],
        )
    # then
    rows = {(d.event.type, d.channel): d for d in Delivery.select(Delivery, Event).join(Event)}
    assert rows[("team.invite.sent", "in_app")].next_attempt_at == night
    for channel in ("email", "discord"):
        assert (rows[("team.invite.sent", channel)].held, rows[("team.invite.sent", channel)].next_attempt_at) == (
            True,
            morning,
        )
        assert rows[("payment.verified", channel)].next_attempt_at == night  # critical: bypasses
    with clock.use_clock(at(morning - dt.timedelta(seconds=60))):
        released, due = release_due_deliveries()
    assert sorted(channel for _, channel in released) == ["discord", "email"] and set(due.values()) == {morning}


# --- cancel ---------------------------------------------------------------------------------------------


def test_a_cancel_stops_pending_deliveries_and_says_when_there_was_nothing_left(db: str, catalog: Catalog) -> None:
    # given one scheduled event, and one already sent
    scheduled = event(deliver_at="2026-05-09T13:00:00Z", recipients=["ana", "bo"])
    sent = event()
    with clock.use_clock(at(T0)):
        ingest_event(scheduled, catalog, ["in_app"])
        ingest_event(sent, catalog, ["in_app"])
    Delivery.update(status=DeliveryStatus.SENT).where(Delivery.event == Event.get(Event.event_id == sent.id)).execute()
    # when / then: cancelling bo only
    with capture_logs() as logs:
        command(catalog, "tidings.notification.cancel", {"source": "/tests", "id": scheduled.id, "recipients": ["bo"]})
    assert {
        (d.user_id, d.status)
        for d in Delivery.select().where(Delivery.event == Event.get(Event.event_id == scheduled.id))
    } == {("ana", "pending"), ("bo", "cancelled")}
    assert logs[-1]["event"] == "notification_cancelled" and logs[-1]["cancelled"] == 1
    # and cancelling what was sent changes nothing, and says so
    with capture_logs() as logs:
        command(catalog, "tidings.notification.cancel", {"source": "/tests", "id": sent.id})
    assert Delivery.get(Delivery.event == Event.get(Event.event_id == sent.id)).status == "sent"
    assert logs[-1]["event"] == "notification_cancel_changed_nothing"
    assert (logs[-1]["reason"], logs[-1]["already_sent"]) == ("already sent or being sent", 1)


def test_a_cancel_key_cancels_every_event_that_carries_it(db: str, catalog: Catalog) -> None:
    with clock.use_clock(at(T0)):
        for _ in range(2):
            ingest_event(event(deliver_at="2026-05-09T13:00:00Z", cancel_key="match:42:reminder"), catalog, ["in_app"])
        ingest_event(event(deliver_at="2026-05-09T13:00:00Z", cancel_key="match:43:reminder"), catalog, ["in_app"])
    command(catalog, "tidings.notification.cancel", {"cancel_key": "match:42:reminder"})
    statuses = sorted((d.event.cancel_key, d.status) for d in Delivery.select(Delivery, Event).join(Event))
    assert statuses == [("match:42:reminder", "cancelled")] * 2 + [("match:43:reminder", "pending")]


# --- digests ------------------------------------------------------------------------------------------


def digest_user(catalog: Catalog) -> None:
    command(
        catalog,
        "tidings.user.upsert",
        {"id": "ana", "email": "ana@example.com", "timezone": "America/New_York", "digest_time": "08:00"},
    )
    command(
        catalog,
        "tidings.preferences.set",
        {
            "user": "ana",
            "preferences": [{"type": "match.completed", "channel": "email", "enabled": True, "mode": "digest"}],
        },
    )


def match(**extra: object) -> CloudEvent:
    return event("match.completed", tournament_name="Cup", winner_name="Owls", **extra)


def digests() -> list[Event]:
    return list(Event.select().where(Event.type == "digest.daily").order_by(Event.id))


def run_digest_job(catalog: Catalog, moment: dt.datetime) -> None:
    with clock.use_clock(at(moment)):
        for user_id, local_date in due_digests():
            make_digest(user_id, local_date, catalog, Settings())


def test_a_user_in_new_york_gets_exactly_one_digest_at_0800_local_on_each_side_of_a_dst_change(
    db: str, catalog: Catalog
) -> None:
    # given digest items on the day before DST begins (2026-03-08) and on that day
    digest_user(catalog)
    with clock.use_clock(at(dt.datetime(2026, 3, 7, 3, 0))):
        ingest_event(match(), catalog, ["in_app", "email"])
        ingest_event(match(), catalog, ["in_app", "email"])
    # when the job runs every 15 minutes around 08:00 local
    for minute in range(0, 120, 15):
        run_digest_job(catalog, dt.datetime(2026, 3, 7, 12, 0) + dt.timedelta(minutes=minute))
        if minute < 60:
            assert digests() == [], "no digest before 08:00 EST (13:00 UTC)"
    with clock.use_clock(at(dt.datetime(2026, 3, 8, 3, 0))):
        ingest_event(match(), catalog, ["in_app", "email"])
    for minute in range(0, 120, 15):
        run_digest_job(catalog, dt.datetime(2026, 3, 8, 11, 0) + dt.timedelta(minutes=minute))
        if minute < 60:
            assert len(digests()) == 1, "no second digest before 08:00 EDT (12:00 UTC)"
    # then exactly one digest per local date, each with that day's items
    first, second = digests()
    assert (first.event_id, second.event_id) == ("ana:2026-03-07", "ana:2026-03-08")
    assert (first.data["groups"][0]["count"], second.data["groups"][0]["count"]) == (2, 1)
    assert first.data["groups"][0]["items"][0]["title"] == "Match result: Owls won (Cup)"
    email_rows = Delivery.select().join(Event).where(Event.type == "match.completed", Delivery.channel == "email")
    assert {d.status for d in email_rows} == {"digested"}
    digest_emails = Delivery.select().join(Event).where(Event.type == "digest.daily")
    assert [(d.user_id, d.channel, d.status) for d in digest_emails] == [("ana", "email", "pending")] * 2


def test_two_schedulers_at_once_make_one_digest(db: str, catalog: Catalog) -> None:
    # given
    digest_user(catalog)
    with clock.use_clock(at(dt.datetime(2026, 3, 7, 3, 0))):
        ingest_event(match(), catalog, ["in_app", "email"])
    results: list[list] = []
    start = threading.Barrier(2)

    def scheduler() -> None:
        start.wait()
        results.append(make_digest("ana", dt.date(2026, 3, 7), catalog, Settings()))

    # when: the clock is process-wide, so it is set once for both threads (each setting and
    # restoring it would leave the other's fake clock in place for the tests that follow)
    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    with clock.use_clock(at(dt.datetime(2026, 3, 7, 13, 0))):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    # then
    assert len(digests()) == 1
    assert sorted(len(r) for r in results) == [0, 1]


def test_items_arriving_after_todays_digest_wait_for_tomorrows(db: str, catalog: Catalog) -> None:
    digest_user(catalog)
    with clock.use_clock(at(dt.datetime(2026, 3, 7, 3, 0))):
        ingest_event(match(), catalog, ["in_app", "email"])
    run_digest_job(catalog, dt.datetime(2026, 3, 7, 13, 0))
    with clock.use_clock(at(dt.datetime(2026, 3, 7, 15, 0))):
        ingest_event(match(), catalog, ["in_app", "email"])
    run_digest_job(catalog, dt.datetime(2026, 3, 7, 16, 0))
    assert len(digests()) == 1
    run_digest_job(catalog, dt.datetime(2026, 3, 8, 12, 0))
    assert [d.event_id for d in digests()] == ["ana:2026-03-07", "ana:2026-03-08"]


# --- cleanups ------------------------------------------------------------------------------------------


def test_the_cleanup_deletes_exactly_what_the_retention_rules_say(db: str, catalog: Catalog) -> None:
    # given, 100 days ago: a read inbox row, an unread one, a failed email log, a cancelled schedule;
    # 40 days ago: a cancelled schedule and a command's key; 10 days ago: a read inbox row
    old, month, recent = (dt.datetime(2026, 5, 9) - dt.timedelta(days=d) for d in (100, 40, 10))
    with clock.use_clock(at(old)):
        read_old = ingest_event(event(recipients=["ana"]), catalog, ["in_app"])
        unread_old = ingest_event(event(recipients=["bo"]), catalog, ["in_app"])
        failed_old = ingest_event(event(recipients=["cy"]), catalog, ["email"])
    with clock.use_clock(at(month)):
        ingest_event(event(recipients=["dee"], deliver_at="2026-06-01T00:00:00Z"), catalog, ["in_app"])
        command_month = ingest_event(
            parsed_event("tidings.topic.subscribe", {"topic": "t", "user": "ana"}, id="sub-1", source="/ops"),
            catalog,
            [],
        ).outcome
    with clock.use_clock(at(recent)):
        read_recent = ingest_event(event(recipients=["eve"]), catalog, ["in_app"])
    for result, when, read in ((read_old, old, True), (unread_old, old, False), (read_recent, recent, True)):
        [(delivery_id, _)] = result.to_enqueue
        Delivery.update(status="sent", updated_at=when).where(Delivery.id == delivery_id).execute()
        InboxItem.create(
            delivery=delivery_id,
            user_id="u",
            type="team.invite.sent",
            title="t",
            body="b",
            data={},
            created_at=when,
            read_at=when if read else None,
        )
    Delivery.update(status="failed", updated_at=old).where(Delivery.id == failed_old.to_enqueue[0][0]).execute()
    Delivery.update(status="cancelled", updated_at=month).where(Delivery.user_id == "dee").execute()
    assert command_month == "applied"
    Rejection.create(message_id="old", reason="not JSON", rejected_at=dt.datetime(2026, 5, 1))
    Rejection.create(message_id="recent", reason="not JSON", rejected_at=dt.datetime(2026, 5, 3))
    # when
    with clock.use_clock(at(dt.datetime(2026, 5, 9))):
        counts = cleanup(retention_days=90, dedup_days=30)
    # then
    assert counts == {
        "read_inbox_items": 1,
        "delivery_logs": 2,
        "cancelled_schedules": 1,
        "rejections": 1,
        "event_keys": 4,
    }
    assert [r.message_id for r in Rejection.select()] == ["recent"]
    assert sorted(i.user_id for i in InboxItem.select()) == ["u", "u"]  # the unread old one and the recent one
    assert sorted(d.user_id for d in Delivery.select()) == ["bo", "eve"]
    assert Event.select().count() == 2  # the events still referenced by those deliveries


def test_a_slot_is_claimed_once(db: str) -> None:
    assert claim_slot("clean_up", "2026-05-09") is True
    assert claim_slot("clean_up", "2026-05-09") is False
    assert claim_slot("clean_up", "2026-05-10") is True


def test_a_redelivered_scheduled_event_is_enqueued_again_with_its_due_time(db: str, catalog: Catalog) -> None:
    # given a scheduled event whose first message died between commit and enqueue
    scheduled = event(deliver_at="2026-05-09T12:00:30Z")
    with clock.use_clock(at(T0)):
        ingest_event(scheduled, catalog, ["in_app"])
    # when it is redelivered
    with clock.use_clock(at(T0 + dt.timedelta(seconds=5))):
        again = ingest_event(scheduled, catalog, ["in_app"])
    # then it is enqueued for its time, not at once
    [(delivery_id, _)] = again.to_enqueue
    assert again.outcome == "duplicate" and again.due == {delivery_id: T0 + dt.timedelta(seconds=30)}


def test_a_cancel_without_authority_reaches_only_its_own_sources_and_publishers_events(
    db: str, catalog: Catalog
) -> None:
    # given the same cancel_key on events of two producers: /matches (user "matches") and /other (user "other")
    matches, other = Sender(publisher="matches"), Sender(publisher="other")
    ours = parsed_event(
        "team.invite.sent",
        invite(team_name="Owls", deliver_at="2026-05-09T13:00:00Z", cancel_key="match:42:reminder"),
        id="m1",
        source="/matches",
    )
    theirs = dataclasses.replace(ours, id="o1", source="/other")
    with clock.use_clock(at(T0)):
        ingest_event(ours, catalog, ["in_app"], sender=matches)
        ingest_event(theirs, catalog, ["in_app"], sender=other)

    def cancel(source: str, sender: Sender, data: dict[str, str]) -> None:
        apply_command(
            parsed_event("tidings.notification.cancel", data, id=f"c{next(_ids)}", source=source),
            catalog,
            sender,
        )

    def statuses() -> dict[str, str]:
        return {d.event.source: d.status for d in Delivery.select(Delivery, Event).join(Event)}

    # when another producer cancels by the key, or under our source name from its own RabbitMQ user
    cancel("/other", other, {"cancel_key": "match:42:reminder"})
    cancel("/matches", other, {"cancel_key": "match:42:reminder"})
    # then only its own event was cancelled
    assert statuses() == {"/matches": "pending", "/other": "cancelled"}
    # and naming another source's event by {source, id} is refused
    with pytest.raises(InvalidEvent, match="cancels only events of its own source"):
        cancel("/other", other, {"source": "/matches", "id": "m1"})
    # when the owner cancels, or an authorised user
    cancel("/matches", matches, {"cancel_key": "match:42:reminder"})
    assert statuses() == {"/matches": "cancelled", "/other": "cancelled"}


def test_an_authorised_cancel_reaches_every_event_with_the_key(db: str, catalog: Catalog) -> None:
    with clock.use_clock(at(T0)):
        ingest_event(
            event(deliver_at="2026-05-09T13:00:00Z", cancel_key="k"),
            catalog,
            ["in_app"],
            sender=Sender(publisher="matches"),
        )
    apply_command(
        parsed_event("tidings.notification.cancel", {"cancel_key": "k"}, id="c-ops", source="/ops"),
        catalog,
        Sender(publisher="ops", privileged=True),
    )
    assert Delivery.get().status == DeliveryStatus.CANCELLED


def test_an_event_dated_beyond_the_clock_skew_is_rejected_and_one_within_it_is_not() -> None:
    with clock.use_clock(at(T0)):
        check_time(dataclasses.replace(event(), time=T0.replace(tzinfo=UTC) + dt.timedelta(seconds=299)), 300.0)
        with pytest.raises(InvalidEvent, match="more than 300 s ahead"):
            check_time(dataclasses.replace(event(), time=T0.replace(tzinfo=UTC) + dt.timedelta(seconds=301)), 300.0)
