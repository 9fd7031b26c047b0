"""Scheduled and cancelled notifications through the real worker, and schedules that survive restarts."""

from __future__ import annotations

import datetime as dt

import pytest

from dispatcher.storage.models import Delivery, Event, InboxItem
from tests.support.deployment import Deployment
from tests.support.events import invite
from tests.support.publishing import publish_event_as_tidings
from tests.support.scheduler import run_release_job, run_schedules, time_passes
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration

UTC = dt.UTC


def in_seconds(seconds: float) -> dt.datetime:
    return dt.datetime.now(UTC) + dt.timedelta(seconds=seconds)


def scheduled_invite(user: str, deliver_at: dt.datetime, **extra: object) -> dict:
    return invite([user], team_name="Owls", deliver_at=deliver_at.isoformat().replace("+00:00", "Z"), **extra)


def in_app(user: str = "ana") -> Delivery | None:
    return Delivery.select().where(Delivery.user_id == user, Delivery.channel == "in_app").first()


def arrival(user: str) -> dt.datetime | None:
    item = InboxItem.select().where(InboxItem.user_id == user).first()
    return item.created_at.replace(tzinfo=UTC) if item else None


def test_a_notification_scheduled_3_s_ahead_arrives_after_3_s_and_not_before(running: Deployment) -> None:
    # when
    deliver_at = in_seconds(3)
    publish_event_as_tidings(running, "team.invite.sent", scheduled_invite("ana", deliver_at))
    # then
    arrived = wait_for(lambda: arrival("ana"), timeout=10, what="the scheduled notification")
    assert deliver_at <= arrived <= deliver_at + dt.timedelta(seconds=2)


def test_a_cancel_before_the_time_prevents_the_delivery(running: Deployment) -> None:
    # given two notifications due at the same time, one with a cancel key
    deliver_at = in_seconds(3)
    publish_event_as_tidings(
        running, "team.invite.sent", scheduled_invite("ana", deliver_at, cancel_key="match:42:reminder")
    )
    publish_event_as_tidings(running, "team.invite.sent", scheduled_invite("bo", deliver_at))
    # when
    publish_event_as_tidings(running, "tidings.notification.cancel", {"cancel_key": "match:42:reminder"})
    # then bo's arrives, and ana's, due at the same moment, does not
    wait_for(lambda: arrival("bo"), timeout=10, what="the other notification")
    assert arrival("ana") is None
    assert in_app("ana").status == "cancelled"


def test_a_schedule_survives_a_restart_of_the_worker(deployment: Deployment) -> None:
    # given a notification due in 5 s, and a worker killed right after taking it in
    worker = deployment.worker().start()
    deployment.use_database()
    deliver_at = in_seconds(5)
    publish_event_as_tidings(deployment, "team.invite.sent", scheduled_invite("ana", deliver_at))
    wait_for(in_app, what="the delivery row")
    worker.kill()
    # when
    worker.start()
    # then
    arrived = wait_for(lambda: arrival("ana"), timeout=20, what="the scheduled notification")
    assert deliver_at <= arrived
    assert InboxItem.select().count() == 1
    print(f"\narrived {(arrived - deliver_at).total_seconds():.2f} s after its time, across a restart")


def test_a_schedule_held_in_the_database_survives_restarts_and_is_released_once(deployment: Deployment) -> None:
    # given a notification due in an hour, held in the database, and every process restarted
    worker = deployment.worker().start()
    deployment.use_database()
    publish_event_as_tidings(deployment, "team.invite.sent", scheduled_invite("ana", in_seconds(3600)))
    wait_for(lambda: getattr(in_app(), "held", False), what="the held delivery")
    worker.kill()
    worker.start()
    # when the scheduler's job runs at 58 min (too early), then at 59 min 59 s, twice (two schedulers)
    time_passes(58 * 60)
    run_release_job(deployment)
    assert in_app().held is True
    time_passes(119)
    run_release_job(deployment)
    run_release_job(deployment)
    # then it is delivered, once
    wait_for(lambda: arrival("ana"), timeout=10, what="the released notification")
    wait_for(lambda: in_app().status == "sent", what="the delivery recorded")
    assert InboxItem.select().count() == 1 and in_app().attempts == 1


def recompute_rankings(deployment: Deployment) -> None:
    """What the scheduler's daily job runs."""
    run_schedules(deployment, "recompute_rankings()")


def test_rank_changes_reach_only_the_subscribers_of_teams_whose_rank_moved(running: Deployment) -> None:
    # given three teams followed by one user each, and a first day of results
    for user, team in (("ana", "a"), ("bo", "b"), ("cy", "c")):
        publish_event_as_tidings(running, "tidings.topic.subscribe", {"topic": f"team:{team}", "user": user})

    def result(order: list[str]) -> dict:
        return {
            "recipients": [],
            "tournament_name": "Cup",
            "tournament_id": "cup",
            "winner_name": order[0],
            "winner": order[0],
            "participants": [
                {"team_id": t, "score": 3 - i, "placement": i + 1, "kills": 0} for i, t in enumerate(order)
            ],
        }

    publish_event_as_tidings(running, "match.completed", result(["a", "b", "c"]))
    wait_for(lambda: Event.select().where(Event.type == "match.completed").count() == 1, what="the result")
    recompute_rankings(running)  # the first snapshot announces nothing
    # when b beats a twice, and c stays last
    publish_event_as_tidings(running, "match.completed", result(["b", "a", "c"]))
    publish_event_as_tidings(running, "match.completed", result(["b", "a", "c"]))
    wait_for(lambda: Event.select().where(Event.type == "match.completed").count() == 3, what="the results")
    recompute_rankings(running)
    recompute_rankings(running)  # a second run, or a second scheduler, announces nothing twice
    # then
    wait_for(
        lambda: InboxItem.select().where(InboxItem.type == "ranking.changed").count() == 4,
        what="the rank change notices",
    )
    notices = sorted(
        (i.user_id, i.data["scope"], i.data["old_rank"], i.data["new_rank"])
        for i in InboxItem.select().where(InboxItem.type == "ranking.changed")
    )
    assert notices == [
        ("ana", "overall", 1, 2),
        ("ana", "tournament:cup", 1, 2),
        ("bo", "overall", 2, 1),
        ("bo", "tournament:cup", 2, 1),
    ]
