"""TIDINGS_CHANNELS: the channels that deliver. A delivery on another is recorded as skipped, never dropped."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from channels import check_switches, switched_off
from channels.in_app import InAppChannel
from dispatcher.cli.status import print_status
from dispatcher.core.catalog import Catalog
from dispatcher.core.errors import ConfigError
from dispatcher.core.settings import Settings
from dispatcher.ops.observations import observe
from dispatcher.runtime.actors import declare_actors
from dispatcher.storage.models import Delivery, DeliveryStatus, InboxItem, Preference
from tests.test_actors import ingest_message, invite


def test_unset_every_channel_delivers() -> None:
    settings = Settings.from_env({})
    assert (settings.channels, switched_off(settings)) == (None, [])


def test_the_channels_named_deliver_and_the_others_are_switched_off() -> None:
    settings = Settings.from_env({"TIDINGS_CHANNELS": "in_app, email"})
    assert settings.channels == ("in_app", "email")
    assert [settings.delivers(name) for name in ("in_app", "email", "discord")] == [True, True, False]
    assert switched_off(settings) == ["discord", "webhook"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "must name at least one channel"),
        ("In-App", "not a channel name"),
        ("email,email", "names a channel twice"),
    ],
)
def test_a_malformed_list_is_refused_naming_the_setting(value: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=f"TIDINGS_CHANNELS .*{reason}"):
        Settings.from_env({"TIDINGS_CHANNELS": value})


def test_a_channel_that_is_not_registered_is_refused_at_start_with_the_ones_that_are() -> None:
    settings = Settings.from_env({"TIDINGS_CHANNELS": "in_app,sms"})
    with pytest.raises(ConfigError, match="names sms, which is not a channel: the channels are in_app, email"):
        check_switches(settings)


def test_a_delivery_on_a_channel_switched_off_is_skipped_with_its_reason_and_preferences_stay(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, stub_settings: Settings, catalog: Catalog
) -> None:
    # given in-app switched off, and ana's own in-app preference for invites
    settings = dataclasses.replace(stub_settings, channels=("email",))
    declare_actors(stub_broker, settings, catalog, channels={"in_app": InAppChannel(settings)})
    Preference.create(
        user_id="ana", type="team.invite.sent", channel="in_app", enabled=True, changed_at=dt.datetime(2026, 12, 3)
    )

    # when
    stub_broker.enqueue(ingest_message(settings, invite("ana")))
    stub_broker.join(settings.queue("ingest"))
    stub_worker.join()

    # then: recorded, skipped, with the reason; no inbox row; the preference is as it was
    [delivery] = Delivery.select()
    assert (delivery.channel, delivery.status, delivery.last_error) == (
        "in_app",
        DeliveryStatus.SKIPPED,
        "channel switched off",
    )
    assert InboxItem.select().count() == 0
    assert [(p.channel, p.enabled) for p in Preference.select()] == [("in_app", True)]


def test_switched_on_again_the_channel_delivers_with_no_migration(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, stub_settings: Settings, catalog: Catalog
) -> None:
    # given an event ingested while in-app was off
    off = dataclasses.replace(stub_settings, channels=("email",))
    declare_actors(stub_broker, off, catalog, channels={"in_app": InAppChannel(off)})
    stub_broker.enqueue(ingest_message(off, invite("ana")))
    stub_broker.join(off.queue("ingest"))
    stub_worker.join()
    # when the worker restarts with every channel on, and a new event arrives
    stub_broker.flush_all()
    stub_broker.actors.clear()
    declare_actors(stub_broker, stub_settings, catalog, channels={"in_app": InAppChannel(stub_settings)})
    stub_broker.enqueue(ingest_message(stub_settings, invite("ana", id="inv-2")))
    stub_broker.join(stub_settings.queue("ingest"))
    stub_worker.join()
    # then the new event is delivered; the first stays skipped (switching on does not replay it)
    assert sorted((d.event.event_id, d.status) for d in Delivery.select()) == [
        ("inv-1", DeliveryStatus.SKIPPED),
        ("inv-2", DeliveryStatus.SENT),
    ]
    assert InboxItem.select().count() == 1


def test_tidings_status_names_the_channels_switched_off(
    sqlite_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a broker nobody listens on (status still prints what it knows)
    settings = Settings(database_url=sqlite_db, broker_url="amqp://guest:guest@127.0.0.1:1/%2F", channels=("in_app",))
    # when
    seen = observe(settings, timeout=1)
    print_status(seen)
    # then
    assert seen.to_json()["channels_off"] == ["email", "discord", "webhook"]
    assert "channels switched off (TIDINGS_CHANNELS): email, discord, webhook" in capsys.readouterr().out
