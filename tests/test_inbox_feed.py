"""The inbox feed in process: routing keys, announcements, the in-app channel's announce-after-commit, the hub."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from channels.base import Notification
from channels.in_app import InAppChannel
from dispatcher.amqp.inbox_feed import Announcement, InboxAnnouncer, routing_key
from dispatcher.api.problems import ApiError
from dispatcher.api.stream import StreamHub
from dispatcher.core.catalog import Catalog
from dispatcher.core.settings import Settings
from dispatcher.storage.models import InboxItem
from tests.support.services import free_port
from tests.test_actors import declare, ingest_message, invite


class Recorder:
    """An announcer that records what it is told, and whether each row was committed by then."""

    def __init__(self) -> None:
        self.announced: list[tuple[str, int, bool]] = []

    def notification(self, user_id: str, item_id: int) -> None:
        committed: list[bool] = []
        # Another thread has a connection of its own: it sees only what has committed.
        reader = threading.Thread(target=lambda: committed.append(InboxItem.get_or_none(id=item_id) is not None))
        reader.start()
        reader.join()
        self.announced.append((user_id, item_id, committed[0]))

    def close(self) -> None:
        pass


def deliver_invites(broker: StubBroker, worker: dramatiq.Worker, settings: Settings, *users: str) -> None:
    broker.enqueue(ingest_message(settings, invite(*users)))
    broker.join(settings.queue("ingest"), fail_fast=False)
    broker.join(settings.queue("in_app"), fail_fast=False)
    worker.join()


def test_routing_keys_are_hashes_so_no_user_id_can_match_another_users() -> None:
    ids = ["ana", "ana.bo", "#", "*", "ana.*", "ana.#", "a" * 255, "ünï"]
    keys = [routing_key(user_id) for user_id in ids]
    assert len(set(keys)) == len(ids)
    assert all(len(key) == 64 and set(key) <= set("0123456789abcdef") for key in keys)


def test_an_announcement_survives_the_wire_and_anything_else_is_ignored() -> None:
    for announcement in (Announcement("ana", 42), Announcement("ana")):
        assert Announcement.decode(announcement.encode()) == announcement
    for body in (b"", b"\xff", b"[]", b'{"kind": "notification", "user_id": "ana", "id": "1"}', b'{"kind": "x"}'):
        assert Announcement.decode(body) is None


def test_each_in_app_row_is_announced_once_after_its_transaction_commits(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, stub_settings: Settings, catalog: Catalog
) -> None:
    # given
    channel = InAppChannel(stub_settings)
    channel.announcer = recorder = Recorder()  # type: ignore[assignment]
    declare(stub_broker, stub_settings, catalog, channel)
    # when
    deliver_invites(stub_broker, stub_worker, stub_settings, "ana", "bo")
    # then: each row, committed before it was announced
    rows = {item.user_id: item.id for item in InboxItem.select()}
    assert sorted(recorder.announced) == [("ana", rows["ana"], True), ("bo", rows["bo"], True)]


class FailingAfterInsert(InAppChannel):
    """Stores the row, then fails: the batch's transaction is rolled back."""

    def deliver_all(self, notifications: list[Notification]) -> None:
        super().deliver_all(notifications)
        raise RuntimeError("the disk is on fire")


def test_a_row_rolled_back_is_never_announced(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, stub_settings: Settings, catalog: Catalog
) -> None:
    # given
    channel = FailingAfterInsert(stub_settings)
    channel.announcer = recorder = Recorder()  # type: ignore[assignment]
    declare(stub_broker, stub_settings, catalog, channel)
    # when
    deliver_invites(stub_broker, stub_worker, stub_settings, "ana")
    # then
    assert InboxItem.select().count() == 0
    assert recorder.announced == []


def test_announcing_to_an_unreachable_broker_neither_raises_nor_blocks() -> None:
    # given
    announcer = InboxAnnouncer(f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F", "t.inbox")
    # when
    started = time.monotonic()
    for item_id in range(100):
        announcer.notification("ana", item_id)
    announcer.counts_changed("ana")
    # then
    assert time.monotonic() - started < 0.5
    announcer.close(timeout=0.1)


class FakeFeed:
    """A feed that binds at once and records what it was asked."""

    connected = True

    def __init__(self, on_announcement: Any, on_connected: Any) -> None:
        self.on_announcement = on_announcement
        self.on_connected = on_connected
        self.bound: list[str] = []
        self.unbound: list[str] = []

    def start(self) -> None:
        pass

    def bind(self, user_id: str) -> concurrent.futures.Future[None]:
        self.bound.append(user_id)
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        future.set_result(None)
        return future

    def unbind(self, user_id: str) -> None:
        self.unbound.append(user_id)

    def close(self, timeout: float = 2.0) -> None:
        pass


def test_the_hub_bounds_open_streams_per_user_and_in_total() -> None:
    async def scenario() -> None:
        hub = StreamHub(FakeFeed, max_streams=3, max_per_user=2)
        first, _ = await hub.open("ana"), await hub.open("ana")
        with pytest.raises(ApiError) as per_user:
            await hub.open("ana")
        await hub.open("bo")
        with pytest.raises(ApiError) as in_total:
            await hub.open("cara")
        assert (per_user.value.status, in_total.value.status) == (429, 503)
        hub.close(first)
        hub.close(first)  # idempotent
        await hub.open("cara")
        assert isinstance(hub.feed, FakeFeed) and hub.feed.unbound == []

    asyncio.run(scenario())


def test_the_hub_hands_an_announcement_only_to_its_users_streams_and_unbinds_after_the_last() -> None:
    async def scenario() -> None:
        hub = StreamHub(FakeFeed)
        ana, bo = await hub.open("ana"), await hub.open("bo")
        feed = hub.feed
        assert isinstance(feed, FakeFeed)
        # when: the feed's thread announces a row of ana's
        threading.Thread(target=feed.on_announcement, args=(Announcement("ana", 7),)).start()
        await asyncio.wait_for(ana.wake.wait(), 2)
        # then
        assert ana.take() == ([7], False) and bo.take() == ([], False)
        hub.close(ana)
        hub.close(bo)
        assert feed.unbound == ["ana", "bo"]

    asyncio.run(scenario())
