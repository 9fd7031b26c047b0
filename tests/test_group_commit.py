"""GroupCommit: units of several threads in one transaction, each all-or-nothing, results after the commit."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

import peewee
import pytest
import structlog

from dispatcher.storage.db import database
from dispatcher.storage.group_commit import GroupCommit
from dispatcher.storage.models import User


def make_user(user_id: str) -> User:
    return User.create(id=user_id, changed_at=dt.datetime(2026, 12, 3))


def test_a_unit_returns_its_result_once_committed(sqlite_db: str) -> None:
    # given
    writer = GroupCommit()
    # when
    result = writer.run(lambda: make_user("ana").id)
    # then: another connection sees the row, so the transaction had committed when run() returned
    assert result == "ana"
    assert _count_from_another_connection(sqlite_db) == 1


def test_units_waiting_together_share_one_transaction_and_a_failing_one_is_rolled_back_alone(
    sqlite_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a writer held up by a first unit, while three threads queue theirs behind it
    writer = GroupCommit()
    commits = _counting_commits(monkeypatch)
    started, release = threading.Event(), threading.Event()
    outcomes: dict[str, object] = {}

    def first() -> str:
        started.set()
        release.wait(5)
        return make_user("first").id

    def failing() -> str:
        make_user("doomed")
        raise ValueError("this unit breaks")

    threads = [threading.Thread(target=_run_into, args=(writer, first, "first", outcomes))]
    threads[0].start()
    assert started.wait(5)
    for name, work in (("bo", lambda: make_user("bo").id), ("doomed", failing), ("cy", lambda: make_user("cy").id)):
        threads.append(threading.Thread(target=_run_into, args=(writer, work, name, outcomes)))
        threads[-1].start()
    _wait_until_queued(writer, 3)
    # when
    release.set()
    for thread in threads:
        thread.join(5)
    # then
    assert outcomes["first"] == "first" and outcomes["bo"] == "bo" and outcomes["cy"] == "cy"
    assert isinstance(outcomes["doomed"], ValueError)
    assert sorted(user.id for user in User.select()) == ["bo", "cy", "first"]
    assert len(commits) == 2  # the first unit's, then one for the three that waited together


def test_a_failing_unit_has_its_after_commit_callbacks_dropped(sqlite_db: str) -> None:
    # given
    writer = GroupCommit()
    called: list[str] = []

    def failing() -> None:
        database.after_commit(lambda: called.append("failing"))
        raise ValueError("rolled back")

    def fine() -> None:
        database.after_commit(lambda: called.append("fine"))

    # when
    with pytest.raises(ValueError, match="rolled back"):
        writer.run(failing)
    writer.run(fine)
    # then
    assert called == ["fine"]


def test_a_commit_that_fails_fails_every_unit_of_the_batch(sqlite_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # given a database whose commit fails once
    writer = GroupCommit()
    real_commit = database.obj.commit
    failures = [peewee.OperationalError("disk I/O error")]

    def commit() -> None:
        if failures:
            raise failures.pop()
        real_commit()

    monkeypatch.setattr(database.obj, "commit", commit)
    # when / then: the unit's thread gets the commit's error, and nothing of the unit is kept
    with pytest.raises(peewee.OperationalError, match="disk I/O error"):
        writer.run(lambda: make_user("ana"))
    assert User.select().count() == 0
    writer.run(lambda: make_user("bo"))
    assert [user.id for user in User.select()] == ["bo"]


def test_a_unit_runs_with_its_threads_bound_log_context(sqlite_db: str) -> None:
    # given
    writer = GroupCommit()
    structlog.contextvars.bind_contextvars(event_id="evt-1")
    try:
        # when
        seen = writer.run(lambda: structlog.contextvars.get_contextvars().get("event_id"))
    finally:
        structlog.contextvars.unbind_contextvars("event_id")
    # then
    assert seen == "evt-1"


def _counting_commits(monkeypatch: pytest.MonkeyPatch) -> list[None]:
    commits: list[None] = []
    real_commit = database.obj.commit

    def commit() -> None:
        commits.append(None)
        real_commit()

    monkeypatch.setattr(database.obj, "commit", commit)
    return commits


def _run_into(writer: GroupCommit, work: Callable[[], object], name: str, outcomes: dict[str, object]) -> None:
    try:
        outcomes[name] = writer.run(work)
    except Exception as e:  # noqa: BLE001 - the test reads it
        outcomes[name] = e


def _wait_until_queued(writer: GroupCommit, count: int) -> None:
    deadline = threading.Event()
    for _ in range(500):
        if writer._queue.qsize() >= count:
            return
        deadline.wait(0.01)
    raise AssertionError(f"{count} units were never queued")


def _count_from_another_connection(url: str) -> int:
    import sqlite3

    connection = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        return int(connection.execute("SELECT COUNT(*) FROM user").fetchone()[0])
    finally:
        connection.close()
