"""Each channel states its facts on its class, and a new channel is one module and one registry line.

The throwaway channels here are registered for one test (the ``pigeons`` fixture) and go through
the catalog's and the preferences' checks, routing and delivery like the real ones.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import jinja2
import pytest

import channels
from channels import REGISTRY, channel_class, channel_classes, channel_names
from channels.base import Channel, Notification
from dispatcher.commands.registry import apply_command
from dispatcher.core import clock
from dispatcher.core.catalog import Catalog, load_catalog
from dispatcher.core.errors import ConfigError, InvalidCommand
from dispatcher.core.events import CloudEvent
from dispatcher.core.rendering import PARTS, Renderer
from dispatcher.core.settings import PROJECT_ROOT, Settings
from dispatcher.pipeline.delivery import run_deliveries
from dispatcher.pipeline.ingest import ingest_event
from dispatcher.storage.models import Delivery, DeliveryStatus, User
from tests.support.events import invite as invite_data
from tests.support.events import parsed_event

T0 = dt.datetime(2026, 5, 9, 12, 0)  # naive UTC
TEMPLATES = PROJECT_ROOT / "templates"


class PigeonChannel(Channel):
    """A test-only channel: it keeps what it was given. Quiet hours apply to it."""

    name = "pigeon"
    addresses = "user"
    quiet_hours = True
    process_group = "hooks"
    delivered: ClassVar[list[Notification]] = []

    def deliver(self, notification: Notification) -> None:
        self.delivered.append(notification)


class OwlChannel(PigeonChannel):
    """Another test-only channel, which flies at night: quiet hours do not apply."""

    name = "owl"
    quiet_hours = False


@pytest.fixture
def pigeons(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, type[Channel]]]:
    """The registry with the test channels added for this test (monkeypatch restores it)."""
    registry = {**REGISTRY, "pigeon": f"{__name__}:PigeonChannel", "owl": f"{__name__}:OwlChannel"}
    monkeypatch.setattr(channels, "REGISTRY", registry)
    PigeonChannel.delivered = []
    yield channel_classes()


def shipped_catalog() -> Catalog:
    return load_catalog(TEMPLATES / "catalog.toml", TEMPLATES, channels=channel_classes())


def invite(event_id: str = "evt-1") -> CloudEvent:
    data = invite_data(["ana"], team_name="Owls", inviter_name="Ada")
    return parsed_event("team.invite.sent", data, id=event_id, source="/teams", time=T0.replace(tzinfo=dt.UTC))


def set_preferences(catalog: Catalog, *items: dict[str, object]) -> str:
    data = {"user": "ana", "preferences": list(items)}
    event = parsed_event("tidings.preferences.set", data, id="prefs-1", source="/accounts", time=T0)
    return apply_command(event, catalog)


# --- the registered channels' facts --------------------------------------------------------------------------------


def test_every_registered_class_bears_its_registry_name() -> None:
    assert {name: cls.name for name, cls in channel_classes().items()} == {name: name for name in REGISTRY}


def test_each_channels_queue_is_consumed_by_the_procfile_group_its_class_names() -> None:
    # given the queues each Procfile process consumes
    groups = {}
    for line in (PROJECT_ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        groups[name] = set(re.findall(r"\}\.(\w+)", command))

    # when / then
    for name, cls in channel_classes().items():
        assert name in groups[cls.process_group], f"{name} belongs to {cls.process_group} in the Procfile"
    assert set().union(*groups.values()) >= set(REGISTRY)


def test_channel_names_selects_channels_by_their_facts() -> None:
    assert channel_names() == list(REGISTRY)
    assert channel_names(digests=True) == [n for n in REGISTRY if channel_class(n).digests]
    assert set(channel_names(addresses="user")) | set(channel_names(addresses="endpoint")) == set(REGISTRY)
    with pytest.raises(TypeError, match="no fact colour"):
        channel_names(colour="blue")


# --- a throwaway channel: validated, routed, delivered -------------------------------------------------------------


def test_a_catalog_type_may_list_a_registered_channel(pigeons: dict[str, type[Channel]], tmp_path: Path) -> None:
    # given
    (tmp_path / "catalog.toml").write_text('[types."bird.landed"]\nchannels = ["in_app", "pigeon"]\n')

    # when
    catalog = load_catalog(tmp_path / "catalog.toml", channels=pigeons)

    # then
    assert catalog.types["bird.landed"].channels == {"in_app", "pigeon"}


def test_a_catalog_type_may_not_list_an_unregistered_channel(tmp_path: Path) -> None:
    # given
    (tmp_path / "catalog.toml").write_text('[types."bird.landed"]\nchannels = ["in_app", "pigeon"]\n')

    # when / then
    with pytest.raises(ConfigError, match="channels must be a list drawn from"):
        load_catalog(tmp_path / "catalog.toml", channels=channel_classes())


def test_a_preference_may_name_a_registered_channel_but_choose_the_digest_only_where_it_has_one(
    sqlite_db: str, pigeons: dict[str, type[Channel]]
) -> None:
    # given
    catalog = shipped_catalog()

    # when
    outcome = set_preferences(catalog, {"type": "*", "channel": "pigeon", "enabled": True})

    # then
    assert outcome == "applied"
    with pytest.raises(InvalidCommand, match='"digest" for the email channel'):
        set_preferences(catalog, {"type": "*", "channel": "pigeon", "enabled": True, "mode": "digest"})


@pytest.mark.parametrize(
    "channel, quiet_hours_apply",
    [("pigeon", True), ("owl", False)],
)
def test_a_registered_channel_is_routed_by_its_facts_and_delivered(
    sqlite_db: str, pigeons: dict[str, type[Channel]], channel: str, quiet_hours_apply: bool
) -> None:
    # given ana, in quiet hours at T0, who switched the test channel on
    catalog = shipped_catalog()
    User.create(id="ana", timezone="UTC", quiet_start="11:00", quiet_end="13:00", changed_at=T0)
    set_preferences(catalog, {"type": "*", "channel": channel, "enabled": True})

    # when it is ingested
    with clock.use_clock(lambda: T0):
        result = ingest_event(invite(), catalog, ["in_app", channel])

    # then it is routed: held for the end of her quiet hours, or due now
    delivery = Delivery.get(Delivery.channel == channel)
    end_of_quiet_hours = dt.datetime(2026, 5, 9, 13, 0)
    assert (delivery.user_id, delivery.status) == ("ana", DeliveryStatus.PENDING)
    assert (delivery.next_attempt_at, delivery.held) == (
        (end_of_quiet_hours, True) if quiet_hours_apply else (T0, False)
    )
    assert ((delivery.id, channel) in result.to_enqueue) is not quiet_hours_apply

    # when it is due and its message runs
    with clock.use_clock(lambda: delivery.next_attempt_at):
        Delivery.update(held=False).where(Delivery.id == delivery.id).execute()  # as the release job does
        outcomes = run_deliveries(
            pigeons[channel](Settings()), [delivery.id], message_id="msg-1", settings=Settings(), catalog=catalog
        )

    # then it is delivered and recorded as sent
    assert outcomes[delivery.id].status == DeliveryStatus.SENT
    assert Delivery.get_by_id(delivery.id).status == DeliveryStatus.SENT
    assert [n.rendered.subject for n in PigeonChannel.delivered] == ["Ada invited you to join Owls"]


def test_each_channel_renders_only_template_parts_that_exist_and_webhooks_none() -> None:
    for name in REGISTRY:
        assert channel_class(name).renders <= PARTS, name
    assert channel_class("webhook").renders == frozenset()
    assert channel_class("in_app").renders == {"subject", "text"}
    assert channel_class("email").renders == PARTS


def test_a_part_left_out_is_not_rendered_so_its_template_errors_cannot_fail_a_channel(tmp_path: Path) -> None:
    kind = tmp_path / "t.broken"
    kind.mkdir()
    (kind / "subject.txt").write_text("Hi {{ data.name }}")
    (kind / "body.txt").write_text("Body for {{ data.name }}")
    (kind / "body.html").write_text("{{ data.missing.key }}")  # StrictUndefined: an error when rendered
    renderer = Renderer(tmp_path)
    rendered = renderer.render("t.broken", {"data": {"name": "Ana"}}, frozenset({"subject", "text"}))
    assert (rendered.subject, rendered.text, rendered.html, rendered.email_text) == (
        "Hi Ana",
        "Body for Ana\n",
        "",
        None,
    )
    with pytest.raises(jinja2.UndefinedError):
        renderer.render("t.broken", {"data": {"name": "Ana"}})
