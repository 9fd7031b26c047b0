"""Signed unsubscribe tokens: genuine ones round-trip, anything altered is refused."""

from __future__ import annotations

import base64
import json

import pytest

from dispatcher.unsubscribe import make_token, read_token, unsubscribe_url

SECRET = "s3cret-key"


def test_a_token_round_trips_to_its_user_and_type() -> None:
    # given
    token = make_token(SECRET, "user-ü/42", "team.invite.sent")

    # when
    read = read_token(SECRET, token)

    # then
    assert read == ("user-ü/42", "team.invite.sent")


def test_a_token_is_url_safe() -> None:
    # given / when
    token = make_token(SECRET, "u?&/=+ 1", "team.invite.sent")

    # then
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def test_an_unsubscribe_url_carries_a_readable_token() -> None:
    # given / when
    url = unsubscribe_url("https://notify.example.com/", SECRET, "u1", "match.started")

    # then
    prefix = "https://notify.example.com/unsubscribe/"
    assert url.startswith(prefix)
    assert read_token(SECRET, url[len(prefix):]) == ("u1", "match.started")


def test_a_token_signed_with_another_secret_is_refused() -> None:
    # given
    token = make_token("another-secret", "u1", "team.invite.sent")

    # when / then
    assert read_token(SECRET, token) is None


def test_a_token_whose_payload_names_another_user_is_refused() -> None:
    # given: the attacker swaps the payload and keeps the signature
    genuine = make_token(SECRET, "u1", "team.invite.sent")
    _, signature = genuine.split(".")
    forged_payload = base64.urlsafe_b64encode(json.dumps(["u2", "team.invite.sent"]).encode()).rstrip(b"=").decode()

    # when / then
    assert read_token(SECRET, f"{forged_payload}.{signature}") is None


@pytest.mark.parametrize("position", [0, 5, -1])
def test_a_token_with_a_changed_character_is_refused(position: int) -> None:
    # given
    token = make_token(SECRET, "u1", "team.invite.sent")
    changed = "A" if token[position] != "A" else "B"
    tampered = token[:position] + changed + token[position + 1:] if position != -1 else token[:-1] + changed

    # when / then
    assert read_token(SECRET, tampered) is None


@pytest.mark.parametrize(
    "token",
    ["", ".", "no-dot-at-all", "abc.", ".abc", "abc.def.ghi", "%%%.***", "payload.sïgnature", "pâyload.signature",
     "\u2603.\u2603", "\udcff.abc", "abc.\udcff"],
)
def test_malformed_tokens_are_refused_without_raising(token: str) -> None:
    # given / when / then
    assert read_token(SECRET, token) is None


def test_a_truncated_token_is_refused() -> None:
    # given
    token = make_token(SECRET, "u1", "team.invite.sent")

    # when / then
    assert read_token(SECRET, token[:-3]) is None
    assert read_token(SECRET, token.split(".")[0]) is None
