"""Admission: who may publish what, with which envelope and which times (pure; the bus tests are in
test_integration_bus_security.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from channels import channel_classes
from dispatcher.amqp.intake import CONTENT_TYPE, Envelope
from dispatcher.core import clock
from dispatcher.core.authority import OPERATOR, Authority, Sender
from dispatcher.core.catalog import Catalog, load_catalog, without_personal
from dispatcher.core.errors import InvalidEvent, Unauthorized
from dispatcher.core.settings import PROJECT_ROOT, Settings
from dispatcher.pipeline.admission import admit
from tests.support.events import cloud_event, invite

NOW = dt.datetime(2026, 5, 9, 12, 0)
SETTINGS = Settings(command_users=("ops",))
AUTHORITY = Authority(SETTINGS.authorised_users)


def envelope(type_: str, publisher: str | None, **changes: Any) -> Envelope:
    return dataclasses.replace(Envelope(routing_key=type_, content_type=CONTENT_TYPE, publisher=publisher), **changes)


def admitted(raw: dict[str, Any], publisher: str | None, catalog: Catalog, **changes: Any) -> Sender:
    with clock.use_clock(lambda: NOW):
        _, sender = admit(
            raw, envelope(raw["type"], publisher, **changes), catalog=catalog, settings=SETTINGS, authority=AUTHORITY
        )
    return sender


UPSERT = cloud_event("tidings.user.upsert", {"id": "ana", "email": "evil@attacker.test"})
ANNOUNCEMENT = cloud_event("system.announcement", {"recipients": ["ana"], "title": "Free money", "message": "Click"})
INVITE = cloud_event("team.invite.sent", invite(team_name="Owls", inviter_name="Ada"))


@pytest.mark.parametrize(
    "raw",
    [
        UPSERT,
        ANNOUNCEMENT,
        cloud_event("payment.verified", {"recipients": ["ana"], "amount": 1, "currency": "EUR", "reference": "r"}),
        cloud_event(
            "tidings.webhook.upsert", {"id": "x", "url": "https://evil.test/", "secret": "whsec_x", "types": ["*"]}
        ),
        cloud_event("tidings.topic.subscribe", {"topic": "t", "user": "ana"}),
        cloud_event(
            "ranking.changed", {"recipients": ["ana"], "team_name": "Owls", "old_rank": 9, "new_rank": 1, "points": 99}
        ),
    ],
)
@pytest.mark.parametrize("publisher", [None, "teams-service"])
def test_a_producer_without_authority_cannot_send_commands_or_restricted_types(
    catalog: Catalog, raw: dict[str, Any], publisher: str | None
) -> None:
    # given a producer that is neither in TIDINGS_COMMAND_USERS nor Tidings' own user (guest)
    # when / then
    with pytest.raises(Unauthorized, match="may not"):
        admitted(raw, publisher, catalog)


@pytest.mark.parametrize("publisher", ["ops", "guest"])
def test_command_users_and_tidings_own_user_may_send_commands_and_restricted_types(
    catalog: Catalog, publisher: str
) -> None:
    # given TIDINGS_COMMAND_USERS=ops, and guest, the user of TIDINGS_BROKER_URL
    # when
    senders = [admitted(raw, publisher, catalog) for raw in (UPSERT, ANNOUNCEMENT)]
    # then
    assert senders == [Sender(publisher=publisher, privileged=True)] * 2


def test_anyone_may_publish_an_ordinary_type_and_a_cancel(catalog: Catalog) -> None:
    # given / when
    cancel = cloud_event("tidings.notification.cancel", {"cancel_key": "match:1:reminder"})
    senders = [admitted(raw, publisher, catalog) for raw in (INVITE, cancel) for publisher in (None, "teams")]
    # then
    assert [s.privileged for s in senders] == [False] * 4


def test_a_restricted_type_admits_the_publishers_its_catalog_entry_lists(tmp_path: Path) -> None:
    # given a catalog whose payment.verified lists the billing service as a publisher
    (tmp_path / "catalog.toml").write_text(
        '[types."payment.verified"]\nchannels = ["in_app"]\npublishers = ["billing"]\n'
    )
    listed = load_catalog(tmp_path / "catalog.toml", channels=channel_classes())
    raw = cloud_event("payment.verified", {"recipients": ["ana"]})
    # when / then
    assert admitted(raw, "billing", listed) == Sender(publisher="billing")
    with pytest.raises(Unauthorized, match="its publishers in the catalog: billing"):
        admitted(raw, "teams", listed)


def test_the_catalog_marks_announcements_payments_rankings_and_series_as_restricted(catalog: Catalog) -> None:
    restricted = sorted(name for name, kind in catalog.types.items() if kind.publishers is not None)
    assert restricted == [
        "payment.refunded",
        "payment.verified",
        "ranking.changed",
        "series.completed",
        "system.announcement",
    ]


def test_a_command_dated_beyond_the_clock_skew_is_rejected(catalog: Catalog) -> None:
    # given an authorised command dated 2999, and one 4 minutes ahead (within the default 5 minutes)
    forged = {**UPSERT, "time": "2999-01-01T00:00:00Z"}
    slightly_ahead = {**UPSERT, "time": "2026-05-09T12:04:00Z"}
    # when / then
    with pytest.raises(InvalidEvent, match="more than 300 s ahead of Tidings' clock"):
        admitted(forged, "ops", catalog)
    admitted(slightly_ahead, "ops", catalog)


def test_a_routing_key_other_than_the_type_and_a_wrong_content_type_are_rejected(catalog: Catalog) -> None:
    with pytest.raises(InvalidEvent, match="routing key 'match.completed' is not the event's type"):
        admitted(UPSERT, "ops", catalog, routing_key="match.completed")
    with pytest.raises(InvalidEvent, match="the content type is 'text/plain'"):
        admitted(INVITE, None, catalog, content_type="text/plain")


def test_the_content_type_is_checked_before_the_body_is_read(catalog: Catalog) -> None:
    # given a body that is no event at all, sent as application/xml
    with pytest.raises(InvalidEvent, match="the content type is 'application/xml'"):
        with clock.use_clock(lambda: NOW):
            admit(
                ["<xml/>"],
                Envelope(content_type="application/xml"),
                catalog=catalog,
                settings=SETTINGS,
                authority=AUTHORITY,
            )


def test_the_operator_at_the_command_line_has_full_authority() -> None:
    assert OPERATOR.privileged and OPERATOR.operator


def test_personal_keys_are_removed_at_any_depth_and_by_dotted_path() -> None:
    # given
    data = {
        "iban": "DE1",
        "amount": 5,
        "payout": {"iban": "DE2", "account": {"holder": "Ana", "bic": "X"}, "note": "ok"},
        "history": [{"iban": "DE3", "amount": 1}, "text"],
    }
    # when
    public = without_personal(data, ("iban", "payout.account.holder"))
    # then
    assert public == {
        "amount": 5,
        "payout": {"account": {"bic": "X"}, "note": "ok"},
        "history": [{"amount": 1}, "text"],
    }
    assert "DE" not in json.dumps(public) and "Ana" not in json.dumps(public)


def test_a_dotted_personal_path_must_name_keys(tmp_path: Path) -> None:
    from dispatcher.core.errors import ConfigError

    (tmp_path / "catalog.toml").write_text('[types."a.b"]\npersonal = ["payout..iban"]\n')
    with pytest.raises(ConfigError, match="dotted paths"):
        load_catalog(tmp_path / "catalog.toml", channels=channel_classes())


def test_the_shipped_catalog_loads(catalog: Catalog) -> None:
    assert load_catalog(PROJECT_ROOT / "templates" / "catalog.toml", channels=channel_classes()) == catalog
