"""Claims make a delivery happen once; run_delivery records each outcome; stale ones are found."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator

import peewee
import pytest

from channels.base import Channel, Notification
from dispatcher.core import clock
from dispatcher.core.catalog import Catalog
from dispatcher.core.errors import DeliveryError, DeliverySkipped
from dispatcher.core.settings import Settings
from dispatcher.jobs.maintenance import stale_deliveries
from dispatcher.pipeline import delivery as delivery_module
from dispatcher.pipeline.delivery import EARLY_TOLERANCE, Outcome, claim, record, retry_delay, run_delivery
from dispatcher.pipeline.ingest import ingest_event
from dispatcher.storage.db import transaction
from dispatcher.storage.models import Delivery, DeliveryStatus
from tests.support.events import invite, parsed_event

T0 = dt.datetime(2026, 5, 9, 12, 0)
STALE_AFTER = 600.0
_ids = itertools.count()


def at(seconds: float) -> clock.Clock:
    moment = T0 + dt.timedelta(seconds=seconds)
    return lambda: moment


def new_deliveries(catalog: Catalog, *users: str, channel: str = "in_app", created: float = 0.0) -> list[int]:
    """Real pending delivery rows, one per user, created (at T0 + ``created`` s) as the ingest actor does."""
    event = parsed_event(
        "team.invite.sent",
        invite(list(users), team_name="Owls", inviter_name="Ada", url="https://x.test/invites/1"),
        id=f"evt-{next(_ids)}",
        source="/teams",
    )
    with clock.use_clock(at(created)):
        result = ingest_event(event, catalog, [channel])
    return [delivery_id for delivery_id, _ in result.to_enqueue]


def new_delivery(catalog: Catalog) -> int:
    return new_deliveries(catalog, "u1")[0]


def row(delivery_id: int) -> Delivery:
    return Delivery.get_by_id(delivery_id)


@pytest.fixture
def at_t0() -> Iterator[None]:
    with clock.use_clock(at(0)):
        yield


def test_a_pending_delivery_is_claimed_once(db: str, catalog: Catalog, at_t0: None) -> None:
    # given
    delivery_id = new_delivery(catalog)

    # when
    claimed = claim(delivery_id, "msg-1", stale_after=STALE_AFTER)

    # then
    assert claimed
    claimed_row = row(delivery_id)
    assert (claimed_row.status, claimed_row.claimed_by, claimed_row.claimed_at, claimed_row.attempts) == (
        DeliveryStatus.SENDING,
        "msg-1",
        T0,
        1,
    )


def test_another_message_cannot_claim_a_fresh_claim(db: str, catalog: Catalog) -> None:
    # given
    delivery_id = new_delivery(catalog)
    with clock.use_clock(at(0)):
        claim(delivery_id, "msg-1", stale_after=STALE_AFTER)

    # when
    with clock.use_clock(at(STALE_AFTER - 1)):
        claimed = claim(delivery_id, "msg-2", stale_after=STALE_AFTER)

    # then
    assert not claimed
    assert (row(delivery_id).claimed_by, row(delivery_id).attempts) == ("msg-1", 1)


def test_the_same_message_can_claim_again_after_a_crash(db: str, catalog: Catalog) -> None:
    # given
    delivery_id = new_delivery(catalog)
    with clock.use_clock(at(0)):
        claim(delivery_id, "msg-1", stale_after=STALE_AFTER)

    # when: RabbitMQ redelivers the same message to another worker
    with clock.use_clock(at(5)):
        claimed = claim(delivery_id, "msg-1", stale_after=STALE_AFTER)

    # then
    assert claimed
    assert (row(delivery_id).claimed_at, row(delivery_id).attempts) == (T0 + dt.timedelta(seconds=5), 2)


def test_anyone_can_take_over_a_claim_older_than_stale_after(db: str, catalog: Catalog) -> None:
    # given
    delivery_id = new_delivery(catalog)
    with clock.use_clock(at(0)):
        claim(delivery_id, "msg-1", stale_after=STALE_AFTER)

    # when
    with clock.use_clock(at(STALE_AFTER + 1)):
        claimed = claim(delivery_id, "msg-2", stale_after=STALE_AFTER)
        claimed_again = claim(delivery_id, "msg-3", stale_after=STALE_AFTER)

    # then
    assert claimed
    assert not claimed_again
    assert row(delivery_id).claimed_by == "msg-2"


@pytest.mark.parametrize("status", DeliveryStatus.FINAL)
def test_a_finished_delivery_can_never_be_claimed(db: str, catalog: Catalog, status: str) -> None:
    # given
    delivery_id = new_delivery(catalog)
    with clock.use_clock(at(0)):
        claim(delivery_id, "msg-1", stale_after=STALE_AFTER)
        record(delivery_id, "msg-1", status)

    # when
    with clock.use_clock(at(STALE_AFTER * 100)):
        by_holder = claim(delivery_id, "msg-1", stale_after=STALE_AFTER)
        by_other = claim(delivery_id, "msg-2", stale_after=STALE_AFTER)

    # then
    assert not by_holder and not by_other
    assert (row(delivery_id).status, row(delivery_id).attempts) == (status, 1)


def test_record_by_the_holder_stores_the_outcome(db: str, catalog: Catalog) -> None:
    # given
    delivery_id = new_delivery(catalog)
    with clock.use_clock(at(0)):
        claim(delivery_id, "msg-1", stale_after=STALE_AFTER)

    # when
    with clock.use_clock(at(3)):
        record(delivery_id, "msg-1", DeliveryStatus.SENT)

    # then
    sent = row(delivery_id)
    assert (sent.status, sent.sent_at, sent.updated_at, sent.last_error) == (
        DeliveryStatus.SENT,
        T0 + dt.timedelta(seconds=3),
        T0 + dt.timedelta(seconds=3),
        None,
    )


def test_recording_pending_releases_the_claim_for_the_next_attempt(db: str, catalog: Catalog, at_t0: None) -> None:
    # given
    delivery_id = new_delivery(catalog)
    claim(delivery_id, "msg-1", stale_after=STALE_AFTER)

    # when
    record(delivery_id, "msg-1", DeliveryStatus.PENDING, "timed out")
    claimed_by_retry = claim(delivery_id, "msg-1-retry", stale_after=STALE_AFTER)

    # then
    assert claimed_by_retry
    assert (row(delivery_id).attempts, row(delivery_id).last_error) == (2, "timed out")


def test_record_by_a_message_without_the_claim_changes_nothing(db: str, catalog: Catalog, at_t0: None) -> None:
    # given
    delivery_id = new_delivery(catalog)
    claim(delivery_id, "msg-1", stale_after=STALE_AFTER)
    before = row(delivery_id).__data__.copy()

    # when
    record(delivery_id, "msg-2", DeliveryStatus.FAILED, "not mine")
    record(delivery_id, "msg-2", DeliveryStatus.PENDING, "not mine either")

    # then
    assert row(delivery_id).__data__ == before


def test_record_after_losing_a_stale_claim_changes_nothing(db: str, catalog: Catalog) -> None:
    # given: msg-1 stalled, msg-2 took over and sent it
    delivery_id = new_delivery(catalog)
    with clock.use_clock(at(0)):
        claim(delivery_id, "msg-1", stale_after=STALE_AFTER)
    with clock.use_clock(at(STALE_AFTER + 1)):
        claim(delivery_id, "msg-2", stale_after=STALE_AFTER)
        record(delivery_id, "msg-2", DeliveryStatus.SENT)

    # when: msg-1 wakes up and reports a failure
    with clock.use_clock(at(STALE_AFTER + 2)):
        record(delivery_id, "msg-1", DeliveryStatus.FAILED, "late")

    # then
    assert (row(delivery_id).status, row(delivery_id).last_error) == (DeliveryStatus.SENT, None)


def test_stale_deliveries_are_the_long_overdue_pending_and_the_long_claimed(db: str, catalog: Catalog) -> None:
    # given
    with clock.use_clock(at(0)):
        old_pending, waiting_for_retry, old_sending, fresh_sending, old_sent, old_failed = new_deliveries(
            catalog, "u1", "u2", "u3", "u4", "u5", "u6"
        )
        claim(old_sending, "msg-a", stale_after=STALE_AFTER)
        for finished, status in ((old_sent, DeliveryStatus.SENT), (old_failed, DeliveryStatus.FAILED)):
            claim(finished, "msg-b", stale_after=STALE_AFTER)
            record(finished, "msg-b", status)
        # a retry due in an hour: its delayed message is on its way
        claim(waiting_for_retry, "msg-c", stale_after=STALE_AFTER)
        record(waiting_for_retry, "msg-c", DeliveryStatus.PENDING, "try later", retry_in=3600)
    with clock.use_clock(at(STALE_AFTER)):
        claim(fresh_sending, "msg-d", stale_after=STALE_AFTER)
        fresh_pending = new_deliveries(catalog, "u7", created=STALE_AFTER)[0]

    # when
    with clock.use_clock(at(STALE_AFTER + 1)):
        stale = stale_deliveries(stale_after=STALE_AFTER)

    # then
    assert stale == [(old_pending, "in_app"), (old_sending, "in_app")]
    assert fresh_pending not in {delivery_id for delivery_id, _ in stale}


def test_a_pending_retry_becomes_stale_only_once_its_attempt_is_long_overdue(db: str, catalog: Catalog) -> None:
    # given a retry due an hour after T0
    with clock.use_clock(at(0)):
        delivery_id = new_delivery(catalog)
        claim(delivery_id, "msg-a", stale_after=STALE_AFTER)
        record(delivery_id, "msg-a", DeliveryStatus.PENDING, "try later", retry_in=3600)

    # when / then
    with clock.use_clock(at(3600 + STALE_AFTER - 1)):
        assert stale_deliveries(stale_after=STALE_AFTER) == []
    with clock.use_clock(at(3600 + STALE_AFTER + 1)):
        assert stale_deliveries(stale_after=STALE_AFTER) == [(delivery_id, "in_app")]


def test_stale_deliveries_are_listed_oldest_first_up_to_the_limit(db: str, catalog: Catalog) -> None:
    # given
    ids = []
    for second in range(5):
        with clock.use_clock(at(second)):
            ids.extend(new_deliveries(catalog, f"u{second}"))

    # when
    with clock.use_clock(at(10_000)):
        stale = stale_deliveries(stale_after=STALE_AFTER, limit=3)

    # then
    assert stale == [(ids[0], "in_app"), (ids[1], "in_app"), (ids[2], "in_app")]


class FakeChannel(Channel):
    """Records what it is asked to deliver; raises the scripted errors first, in order."""

    name = "fake"

    def __init__(self, settings: Settings, *errors: Exception) -> None:
        super().__init__(settings)
        self.errors = list(errors)
        self.delivered: list[Notification] = []

    def deliver(self, notification: Notification) -> None:
        self.delivered.append(notification)
        if self.errors:
            raise self.errors.pop(0)


class TransactionalFakeChannel(FakeChannel):
    """A channel that only writes to the database, run inside its batch's transaction."""

    transactional = True


@pytest.fixture
def settings() -> Settings:
    return Settings()


def run(
    channel: Channel, delivery_id: int, settings: Settings, catalog: Catalog, *, message_id: str = "msg-1"
) -> Outcome:
    """Run the delivery as its message would: once it is due (the clock moves there if that is later)."""
    due, current = row(delivery_id).next_attempt_at, clock.now()
    with clock.use_clock(lambda: max(due, current)):
        return run_delivery(channel, delivery_id, message_id=message_id, settings=settings, catalog=catalog)


def test_a_success_whose_record_meets_a_locked_database_is_recorded_later_and_not_sent_again(
    db: str, catalog: Catalog, settings: Settings, at_t0: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a database that refuses the first two records ("database is locked": another writer held it too long)
    delivery_id = new_delivery(catalog)
    channel = FakeChannel(settings)
    real_record_sent = delivery_module.record_sent
    refusals = [peewee.OperationalError("database is locked"), peewee.OperationalError("database is locked")]

    def record_sent(ids: list[int], message_id: str) -> None:
        if refusals:
            raise refusals.pop()
        real_record_sent(ids, message_id)

    monkeypatch.setattr(delivery_module, "record_sent", record_sent)
    monkeypatch.setattr(delivery_module.time, "sleep", lambda seconds: None)

    # when
    outcome = run(channel, delivery_id, settings, catalog)

    # then: sent once, recorded on the third try; a retry of the message would find nothing to send
    assert outcome == Outcome(DeliveryStatus.SENT)
    assert (len(channel.delivered), refusals, row(delivery_id).status) == (1, [], DeliveryStatus.SENT)
    assert run(channel, delivery_id, settings, catalog) == Outcome("already_handled")
    assert len(channel.delivered) == 1


def test_a_delivery_that_succeeds_is_sent(db: str, catalog: Catalog, settings: Settings, at_t0: None) -> None:
    # given
    delivery_id = new_delivery(catalog)
    channel = FakeChannel(settings)

    # when
    outcome = run(channel, delivery_id, settings, catalog)

    # then
    assert outcome == Outcome(DeliveryStatus.SENT)
    assert (row(delivery_id).status, row(delivery_id).sent_at, row(delivery_id).attempts) == (
        DeliveryStatus.SENT,
        T0,
        1,
    )
    [notification] = channel.delivered
    assert (notification.delivery_id, notification.user_id, notification.kind.name) == (
        delivery_id,
        "u1",
        "team.invite.sent",
    )
    assert notification.rendered.subject == "Ada invited you to join Owls"
    assert notification.url == "https://x.test/invites/1"
    assert notification.unsubscribe_url is None


def test_a_skipped_delivery_is_recorded_with_its_reason(db: str, catalog: Catalog, settings: Settings) -> None:
    # given
    delivery_id = new_delivery(catalog)
    channel = FakeChannel(settings, DeliverySkipped("the user has no email address"))

    # when
    outcome = run(channel, delivery_id, settings, catalog)

    # then
    assert outcome == Outcome(DeliveryStatus.SKIPPED)
    assert (row(delivery_id).status, row(delivery_id).last_error) == (
        DeliveryStatus.SKIPPED,
        "the user has no email address",
    )


def test_a_permanent_error_fails_the_delivery_without_raising(db: str, catalog: Catalog, settings: Settings) -> None:
    # given
    delivery_id = new_delivery(catalog)
    channel = FakeChannel(settings, DeliveryError("550 no such mailbox", permanent=True))

    # when
    outcome = run(channel, delivery_id, settings, catalog)

    # then
    assert outcome == Outcome(DeliveryStatus.FAILED)
    assert (row(delivery_id).status, row(delivery_id).last_error) == (DeliveryStatus.FAILED, "550 no such mailbox")


def test_a_transient_error_leaves_the_delivery_pending_and_asks_for_a_retry(
    db: str, catalog: Catalog, settings: Settings
) -> None:
    # given
    delivery_id = new_delivery(catalog)
    channel = FakeChannel(settings, DeliveryError("451 try again later"))

    # when
    with clock.use_clock(at(0)):
        outcome = run(channel, delivery_id, settings, catalog)

    # then
    assert outcome.status == "retry"
    assert outcome.retry_in is not None
    assert settings.retry_min_backoff <= outcome.retry_in <= settings.retry_min_backoff * 1.25
    pending = row(delivery_id)
    assert (pending.status, pending.last_error, pending.claimed_by, pending.attempts) == (
        DeliveryStatus.PENDING,
        "451 try again later",
        None,
        1,
    )
    assert pending.next_attempt_at == T0 + dt.timedelta(seconds=outcome.retry_in)


def test_a_retry_waits_at_least_as_long_as_the_target_asked(db: str, catalog: Catalog, settings: Settings) -> None:
    # given
    delivery_id = new_delivery(catalog)
    channel = FakeChannel(settings, DeliveryError("429 slow down", retry_after=120.0))

    # when
    outcome = run(channel, delivery_id, settings, catalog)

    # then
    assert outcome.status == "retry"
    assert outcome.retry_in is not None and outcome.retry_in >= 120.0


def test_the_retry_after_a_transient_error_can_succeed(db: str, catalog: Catalog, settings: Settings) -> None:
    # given
    delivery_id = new_delivery(catalog)
    channel = FakeChannel(settings, DeliveryError("451 try again later"))
    assert run(channel, delivery_id, settings, catalog, message_id="msg-1").status == "retry"

    # when: the retry is a new, delayed message
    outcome = run(channel, delivery_id, settings, catalog, message_id="msg-1-retry")

    # then
    assert outcome == Outcome(DeliveryStatus.SENT)
    assert (row(delivery_id).status, row(delivery_id).last_error, row(delivery_id).attempts) == (
        DeliveryStatus.SENT,
        None,
        2,
    )
    assert len(channel.delivered) == 2


def test_a_transient_error_after_the_last_allowed_retry_fails_the_delivery(db: str, catalog: Catalog) -> None:
    # given: one retry allowed, so two attempts in all
    settings = Settings(retry_max=1)
    delivery_id = new_delivery(catalog)
    channel = FakeChannel(settings, DeliveryError("451 first"), DeliveryError("451 second"))
    first = run(channel, delivery_id, settings, catalog, message_id="msg-1")

    # when
    second = run(channel, delivery_id, settings, catalog, message_id="msg-2")

    # then
    assert first.status == "retry"
    assert second == Outcome(DeliveryStatus.FAILED)
    assert (row(delivery_id).status, row(delivery_id).last_error, row(delivery_id).attempts) == (
        DeliveryStatus.FAILED,
        "451 second",
        2,
    )


def test_an_unexpected_error_is_retried_like_a_transient_one(db: str, catalog: Catalog, settings: Settings) -> None:
    # given
    delivery_id = new_delivery(catalog)
    channel = FakeChannel(settings, RuntimeError("boom"))

    # when
    outcome = run(channel, delivery_id, settings, catalog)

    # then
    assert outcome.status == "retry"
    assert (row(delivery_id).status, row(delivery_id).last_error) == (DeliveryStatus.PENDING, "RuntimeError: boom")


def test_an_unexpected_error_after_the_last_allowed_retry_fails_the_delivery(db: str, catalog: Catalog) -> None:
    # given
    settings = Settings(retry_max=1)
    delivery_id = new_delivery(catalog)
    channel = FakeChannel(settings, RuntimeError("boom"), RuntimeError("boom again"))
    run(channel, delivery_id, settings, catalog, message_id="msg-1")

    # when
    outcome = run(channel, delivery_id, settings, catalog, message_id="msg-2")

    # then
    assert outcome == Outcome(DeliveryStatus.FAILED)
    assert (row(delivery_id).status, row(delivery_id).last_error) == (DeliveryStatus.FAILED, "RuntimeError: boom again")


def test_an_unexpected_error_in_a_transactional_channel_propagates_and_rolls_the_batch_back(
    db: str, catalog: Catalog, settings: Settings
) -> None:
    # given: a batch of two, run in one transaction as the actor runs it; the second one breaks
    first_id, second_id = new_deliveries(catalog, "u1", "u2")
    channel = TransactionalFakeChannel(settings)

    # when
    with pytest.raises(RuntimeError, match="boom"):
        with transaction():
            run(channel, first_id, settings, catalog, message_id="msg-1")
            channel.errors.append(RuntimeError("boom"))
            run(channel, second_id, settings, catalog, message_id="msg-1")

    # then: nothing of the batch is recorded, so the retried message starts over
    assert [(row(i).status, row(i).attempts, row(i).claimed_by) for i in (first_id, second_id)] == [
        (DeliveryStatus.PENDING, 0, None),
        (DeliveryStatus.PENDING, 0, None),
    ]
    with transaction():
        retried = [run(channel, i, settings, catalog, message_id="msg-1") for i in (first_id, second_id)]
    assert retried == [Outcome(DeliveryStatus.SENT), Outcome(DeliveryStatus.SENT)]


@pytest.mark.parametrize("first_error", [None, DeliverySkipped("no address"), DeliveryError("gone", permanent=True)])
def test_a_finished_delivery_is_not_delivered_again(
    db: str, catalog: Catalog, settings: Settings, first_error: Exception | None
) -> None:
    # given
    delivery_id = new_delivery(catalog)
    channel = FakeChannel(settings, *([first_error] if first_error else []))
    first = run(channel, delivery_id, settings, catalog, message_id="msg-1")

    # when: the same message redelivered, and another message for the same delivery
    again = run(channel, delivery_id, settings, catalog, message_id="msg-1")
    other = run(channel, delivery_id, settings, catalog, message_id="msg-2")

    # then
    assert again == other == Outcome("already_handled")
    assert len(channel.delivered) == 1
    assert row(delivery_id).status == first.status


def test_a_delivery_being_sent_elsewhere_is_not_delivered_twice(
    db: str, catalog: Catalog, settings: Settings, at_t0: None
) -> None:
    # given
    delivery_id = new_delivery(catalog)
    claim(delivery_id, "msg-elsewhere", stale_after=STALE_AFTER)
    channel = FakeChannel(settings)

    # when
    outcome = run(channel, delivery_id, settings, catalog, message_id="msg-1")

    # then
    assert outcome == Outcome("already_handled")
    assert channel.delivered == []


@pytest.mark.parametrize("attempts, backoff", [(1, 5.0), (2, 10.0), (3, 20.0), (6, 160.0), (7, 300.0), (40, 300.0)])
def test_the_retry_delay_doubles_with_each_attempt_up_to_the_maximum(attempts: int, backoff: float) -> None:
    # given
    settings = Settings(retry_min_backoff=5.0, retry_max_backoff=300.0)

    # when
    delays = [retry_delay(attempts, settings) for _ in range(50)]

    # then: jitter of up to a quarter on top, but never past the maximum
    assert all(backoff <= delay <= min(backoff * 1.25, 300.0) for delay in delays)


def test_the_retry_delay_is_never_shorter_than_retry_after() -> None:
    # given
    settings = Settings(retry_min_backoff=5.0, retry_max_backoff=300.0)

    # when
    delay = retry_delay(1, settings, retry_after=3600.0)

    # then
    assert delay == 3600.0


def test_a_retry_far_ahead_is_held_in_the_database_not_in_a_message(
    db: str, catalog: Catalog, settings: Settings
) -> None:
    # given a channel whose schedule retries an hour after the first failure
    delivery_id = new_delivery(catalog)
    channel = FakeChannel(settings, DeliveryError("503 try later"))
    channel.retry_schedule = (0.0, 3600.0)
    # when
    with clock.use_clock(at(0)):
        outcome = run(channel, delivery_id, settings, catalog)
    # then
    assert (outcome.status, outcome.retry_in, outcome.held) == ("retry", 3600.0, True)
    assert (row(delivery_id).held, row(delivery_id).next_attempt_at) == (True, T0 + dt.timedelta(hours=1))


def test_a_schedule_gives_up_after_its_last_attempt(db: str, catalog: Catalog, settings: Settings) -> None:
    delivery_id = new_delivery(catalog)
    channel = FakeChannel(settings, DeliveryError("500"), DeliveryError("500"))
    channel.retry_schedule = (0.0, 5.0)
    assert run(channel, delivery_id, settings, catalog).status == "retry"
    assert run(channel, delivery_id, settings, catalog, message_id="msg-2").status == DeliveryStatus.FAILED


def test_held_retries_are_released_once_when_due(db: str, catalog: Catalog) -> None:
    # given one retry due in an hour and one delivery that is not held
    from dispatcher.jobs.maintenance import release_due_deliveries

    with clock.use_clock(at(0)):
        held, not_held = new_deliveries(catalog, "u1", "u2")
        claim(held, "msg-a", stale_after=STALE_AFTER)
        record(held, "msg-a", DeliveryStatus.PENDING, "503", retry_in=3600, held=True)
    # when / then: nothing before its release window, it once within it (with its due time), nothing twice
    with clock.use_clock(at(3600 - 91)):
        assert release_due_deliveries() == ([], {})
    with clock.use_clock(at(3600 - 89)):
        assert release_due_deliveries() == ([(held, "in_app")], {held: T0 + dt.timedelta(hours=1)})
        assert release_due_deliveries() == ([], {})
    assert row(held).held is False and not_held not in {d for d, _ in release_due_deliveries()[0]}


def test_a_delivery_not_yet_due_or_held_is_not_claimed_by_any_message(db: str, catalog: Catalog) -> None:
    # given a delivery due in two minutes and one held in the database for the release job
    soon, held = new_deliveries(catalog, "u1", "u2")
    Delivery.update(next_attempt_at=T0 + dt.timedelta(minutes=2)).where(Delivery.id == soon).execute()
    Delivery.update(next_attempt_at=T0 + dt.timedelta(hours=2), held=True).where(Delivery.id == held).execute()

    # when a message for both arrives now (early, or forged), then within the tolerance of the first's time
    with clock.use_clock(at(0)):
        early = [claim(d, "msg-early", stale_after=STALE_AFTER) for d in (soon, held)]
    with clock.use_clock(at(120 - EARLY_TOLERANCE)):
        on_time = [claim(d, "msg-on-time", stale_after=STALE_AFTER) for d in (soon, held)]

    # then neither is taken early, the due one is taken on time, and the held one waits for its release
    assert early == [False, False]
    assert on_time == [True, False]
    assert (row(held).status, row(held).attempts, row(held).held) == (DeliveryStatus.PENDING, 0, True)
