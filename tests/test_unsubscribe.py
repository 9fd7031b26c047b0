"""Signed unsubscribe tokens: genuine ones round-trip until they expire, anything altered is refused."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from typing import Any

import pytest

from dispatcher.core import clock
from dispatcher.core.unsubscribe import InvalidToken, make_token, read_token, unsubscribe_url, verify_token

SECRET = "s3cret-key-of-at-least-32-characters"
TTL = 30 * 24 * 3600.0
T0 = dt.datetime(2026, 5, 9, 12, 0)


def at(seconds: float) -> clock.Clock:
    moment = T0 + dt.timedelta(seconds=seconds)
    return lambda: moment


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def signed(payload: object, secret: str = SECRET) -> str:
    """A token for any payload, signed the way Tidings signs: what only a key holder can make."""
    encoded = b64(json.dumps(payload, separators=(",", ":")).encode())
    return f"{encoded}.{b64(hmac.new(secret.encode(), encoded.encode(), hashlib.sha256).digest()[:24])}"


def claims_of(token: str) -> list[Any]:
    """What a token's payload says: anyone can read it, only the key holder can sign it."""
    payload = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_a_token_round_trips_to_its_user_and_type() -> None:
    # given
    token = make_token(SECRET, "user-ü/42", "team.invite.sent", ttl=TTL)

    # when
    read = read_token(SECRET, token)

    # then
    assert read == ("user-ü/42", "team.invite.sent")


def test_a_token_is_url_safe() -> None:
    # given / when
    token = make_token(SECRET, "u?&/=+ 1", "team.invite.sent", ttl=TTL)

    # then
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def test_an_unsubscribe_url_carries_a_readable_token() -> None:
    # given / when
    url = unsubscribe_url("https://notify.example.com/", SECRET, "u1", "match.started", ttl=TTL)

    # then
    prefix = "https://notify.example.com/unsubscribe/"
    assert url.startswith(prefix)
    assert read_token(SECRET, url[len(prefix) :]) == ("u1", "match.started")


def test_a_token_signed_with_another_secret_is_refused() -> None:
    # given
    token = make_token("another-secret-of-at-least-32-chars", "u1", "team.invite.sent", ttl=TTL)

    # when / then
    assert read_token(SECRET, token) is None


def test_a_token_whose_payload_names_another_user_is_refused() -> None:
    # given: the attacker swaps the payload and keeps the signature
    genuine = make_token(SECRET, "u1", "team.invite.sent", ttl=TTL)
    _, signature = genuine.split(".")
    _, type_name, expires_at = claims_of(genuine)
    forged_payload = b64(json.dumps(["u2", type_name, expires_at]).encode())

    # when / then
    assert read_token(SECRET, f"{forged_payload}.{signature}") is None


@pytest.mark.parametrize("position", [0, 5, -1])
def test_a_token_with_a_changed_character_is_refused(position: int) -> None:
    # given
    token = make_token(SECRET, "u1", "team.invite.sent", ttl=TTL)
    changed = "A" if token[position] != "A" else "B"
    tampered = token[:position] + changed + token[position + 1 :] if position != -1 else token[:-1] + changed

    # when / then
    assert read_token(SECRET, tampered) is None


@pytest.mark.parametrize(
    "token",
    [
        "",
        ".",
        "no-dot-at-all",
        "abc.",
        ".abc",
        "abc.def.ghi",
        "%%%.***",
        "payload.sïgnature",
        "pâyload.signature",
        "\u2603.\u2603",
        "\udcff.abc",
        "abc.\udcff",
    ],
)
def test_malformed_tokens_are_refused_without_raising(token: str) -> None:
    # given / when / then
    assert read_token(SECRET, token) is None


def test_a_truncated_token_is_refused() -> None:
    # given
    token = make_token(SECRET, "u1", "team.invite.sent", ttl=TTL)

    # when / then
    assert read_token(SECRET, token[:-3]) is None
    assert read_token(SECRET, token.split(".")[0]) is None


def test_a_fresh_token_verifies_until_just_before_its_expiry() -> None:
    # given
    with clock.use_clock(at(0)):
        token = make_token(SECRET, "u1", "team.invite.sent", ttl=TTL)

    # when / then
    for seconds in (0, 1, TTL - 1):
        with clock.use_clock(at(seconds)):
            assert verify_token(SECRET, token) == ("u1", "team.invite.sent")


def test_a_token_past_its_expiry_is_refused_saying_so() -> None:
    # given
    with clock.use_clock(at(0)):
        token = make_token(SECRET, "u1", "team.invite.sent", ttl=TTL)

    # when / then
    with clock.use_clock(at(TTL)):
        with pytest.raises(InvalidToken, match=r"the token expired at 2026-06-08T12:00:00Z"):
            verify_token(SECRET, token)
        assert read_token(SECRET, token) is None


def test_a_token_whose_expiry_was_pushed_back_is_refused() -> None:
    # given: the attacker rewrites the expiry in the payload and keeps the signature
    with clock.use_clock(at(0)):
        genuine = make_token(SECRET, "u1", "team.invite.sent", ttl=TTL)
    payload, signature = genuine.split(".")
    user_id, type_name, expires_at = claims_of(genuine)
    later = b64(json.dumps([user_id, type_name, expires_at + 10 * 365 * 24 * 3600]).encode())

    # when / then: refused, now and after the genuine expiry
    for seconds in (0, TTL + 1):
        with clock.use_clock(at(seconds)):
            with pytest.raises(InvalidToken, match="signature"):
                verify_token(SECRET, f"{later}.{signature}")


def test_an_old_format_token_without_an_expiry_is_refused() -> None:
    # given a token as Tidings signed them before they expired: [user, type]
    old = signed(["u1", "team.invite.sent"])

    # when / then
    with pytest.raises(InvalidToken, match="no expiry"):
        verify_token(SECRET, old)
    assert read_token(SECRET, old) is None


@pytest.mark.parametrize(
    "payload",
    [
        ["u1", "t", "2030-01-01"],
        ["u1", "t", 1.5e9],
        ["u1", "t", True],
        ["u1", 2, 2**40],
        {"u": "u1"},
        ["u1", "t", 2**40, "extra"],
        "u1",
    ],
)
def test_a_signed_token_of_the_wrong_shape_is_refused_as_malformed(payload: object) -> None:
    with pytest.raises(InvalidToken, match="malformed"):
        verify_token(SECRET, signed(payload))


def test_an_unsubscribe_url_expires_after_the_ttl_it_was_given() -> None:
    # given
    prefix = "https://notify.example.com/unsubscribe/"
    with clock.use_clock(at(0)):
        url = unsubscribe_url("https://notify.example.com", SECRET, "u1", "match.started", ttl=60.0)

    # when / then
    with clock.use_clock(at(59)):
        assert read_token(SECRET, url[len(prefix) :]) == ("u1", "match.started")
    with clock.use_clock(at(60)):
        assert read_token(SECRET, url[len(prefix) :]) is None
