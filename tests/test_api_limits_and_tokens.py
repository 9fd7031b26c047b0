"""What a request may cost (body size, rate) and what a user token must be, as pure logic."""

from __future__ import annotations

import datetime as dt

import jwt
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from dispatcher.api.auth import InvalidUserToken, mint_user_token, verify_user_token
from dispatcher.api.limits import BodyLimitMiddleware, TokenBuckets
from dispatcher.core import clock
from dispatcher.core.api_keys import find_key, key_digest, parse_api_keys

SECRET = "s" * 40
T0 = dt.datetime(2026, 5, 9, 12, 0)


def body_echo(max_bytes: int) -> TestClient:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"length": len(await request.body())}

    app.add_middleware(BodyLimitMiddleware, max_bytes=max_bytes)
    return TestClient(app)


def test_a_streamed_body_over_the_limit_is_cut_off_with_413() -> None:
    client = body_echo(1000)
    assert client.post("/echo", content=iter([b"x" * 600, b"x" * 300])).json() == {"length": 900}
    response = client.post("/echo", content=iter([b"x" * 600, b"x" * 600]))
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read() -> None:
    assert body_echo(1000).post("/echo", content=b"x" * 1001).status_code == 413


def test_a_token_bucket_allows_a_burst_then_one_request_per_refill() -> None:
    now = [0.0]
    buckets = TokenBuckets(60, monotonic=lambda: now[0])  # one a second, bursts of 60
    assert [buckets.take("a") for _ in range(60)] == [0.0] * 60
    assert buckets.take("a") == pytest.approx(1.0)
    assert buckets.take("b") == 0.0
    now[0] = 1.0
    assert buckets.take("a") == 0.0


def test_a_minted_user_token_names_its_user() -> None:
    with clock.use_clock(lambda: T0):
        token = mint_user_token(SECRET, "ana", ttl=600)
        assert verify_user_token(SECRET, token, max_ttl=3600) == "ana"


@pytest.mark.parametrize(
    ("claims", "secret", "reason"),
    [
        ({"sub": "ana", "exp": 1}, SECRET, "expired"),
        ({"sub": "ana"}, SECRET, "exp"),
        ({"exp": 2_000_000_000}, SECRET, "exp|sub"),
        ({"sub": "ana", "exp": 2_000_000_000}, "w" * 40, "signature"),
        ({"sub": "ana", "exp": 2_000_000_000}, SECRET, "longer than"),
        ({"sub": "", "exp": 1778328000}, SECRET, "user id"),
        ({"sub": "ana", "exp": "soon"}, SECRET, "exp"),
        ({"sub": "ana", "exp": 1778328300, "iat": 1778331600}, SECRET, "future"),
    ],
)
def test_a_bad_user_token_is_refused_with_its_reason(claims: dict[str, object], secret: str, reason: str) -> None:
    token = jwt.encode(claims, secret, algorithm="HS256")
    with clock.use_clock(lambda: T0), pytest.raises(InvalidUserToken, match=reason):
        verify_user_token(SECRET, token, max_ttl=3600)


def test_a_token_signed_with_another_algorithm_is_refused() -> None:
    token = jwt.encode({"sub": "ana", "exp": 1778328300}, SECRET, algorithm="HS512")
    with clock.use_clock(lambda: T0), pytest.raises(InvalidUserToken):
        verify_user_token(SECRET, token, max_ttl=3600)


def test_api_keys_are_parsed_by_name_scopes_and_key_or_digest() -> None:
    raw = "k" * 32
    keys = parse_api_keys(f"billing:events:{raw}, ops:read+webhooks:sha256:{key_digest('o' * 40).hex()}")
    assert [(key.name, sorted(key.scopes)) for key in keys] == [("billing", ["events"]), ("ops", ["read", "webhooks"])]
    assert find_key(keys, raw) is keys[0]
    assert find_key(keys, "o" * 40) is keys[1]
    assert find_key(keys, "nope") is None
    assert raw not in repr(keys)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("billing:events:short", "at least 32"),
        ("billing:everything:" + "k" * 32, "scopes"),
        ("Billing:events:" + "k" * 32, "name"),
        ("a:events:" + "k" * 32 + ",a:read:" + "j" * 32, "twice"),
        ("a:events:sha256:xyz", "64 lowercase hex"),
    ],
)
def test_a_bad_api_key_entry_is_refused_without_echoing_the_key(value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as error:
        parse_api_keys(value)
    assert "k" * 32 not in str(error.value)


def test_the_access_log_shows_no_user_token_from_a_query_string() -> None:
    import logging

    from dispatcher.api.unsubscribe import HideTokens

    token = mint_user_token(SECRET, "ana", ttl=60)
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        (
            "127.0.0.1:5",
            "GET",
            f"/v1/me/notifications/stream?token={token}&x=1",
            "1.1",
            200,
        ),
        None,
    )
    HideTokens().filter(record)
    assert token not in record.getMessage()
    assert "/v1/me/notifications/stream?token=<redacted>&x=1" in record.getMessage()
