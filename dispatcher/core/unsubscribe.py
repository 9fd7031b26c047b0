"""Signed one-click unsubscribe links (RFC 8058) for List-Unsubscribe headers.

A token is ``<payload>.<signature>``: the payload is base64url JSON
``[user_id, type, expires_at]`` (Unix seconds, UTC) and the signature an HMAC-SHA256
of it with TIDINGS_SECRET_KEY, so the expiry cannot be changed without the key.
Tokens made before tokens expired (``[user_id, type]``) are refused: they would
otherwise stay valid for ever. Their users unsubscribe from a newer email.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import math

from dispatcher.core import clock
from dispatcher.core.errors import PermanentError

_EPOCH = dt.datetime(1970, 1, 1)


class InvalidToken(PermanentError):
    """An unsubscribe token that is malformed, forged or expired; the message says which."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()[:24])


def _unix_now() -> float:
    return (clock.now() - _EPOCH).total_seconds()


def make_token(secret: str, user_id: str, type_name: str, *, ttl: float) -> str:
    """A token naming (user, type), valid for ``ttl`` seconds from now, signed with TIDINGS_SECRET_KEY."""
    expires_at = math.ceil(_unix_now() + ttl)
    payload = _b64(json.dumps([user_id, type_name, expires_at], separators=(",", ":")).encode())
    return f"{payload}.{_signature(secret, payload)}"


def verify_token(secret: str, token: str) -> tuple[str, str]:
    """(user_id, type) if the token is genuine and unexpired; else raise InvalidToken saying why."""
    if not token.isascii():
        raise InvalidToken("malformed token")  # hmac.compare_digest raises TypeError on non-ASCII str
    payload, _, signature = token.partition(".")
    if not hmac.compare_digest(signature, _signature(secret, payload)):
        raise InvalidToken("the token's signature does not match")
    try:
        claims = json.loads(_unb64(payload))
    except (ValueError, TypeError):
        raise InvalidToken("malformed token") from None
    if isinstance(claims, list) and len(claims) == 2:
        raise InvalidToken("the token has no expiry (made before tokens expired)")
    if not (
        isinstance(claims, list)
        and len(claims) == 3
        and isinstance(claims[0], str)
        and isinstance(claims[1], str)
        and type(claims[2]) is int
    ):
        raise InvalidToken("malformed token")
    user_id, type_name, expires_at = claims
    if _unix_now() >= expires_at:
        raise InvalidToken(f"the token expired at {_EPOCH + dt.timedelta(seconds=expires_at):%Y-%m-%dT%H:%M:%SZ}")
    return user_id, type_name


def read_token(secret: str, token: str) -> tuple[str, str] | None:
    """(user_id, type) if the token is genuine and unexpired, else None (see :func:`verify_token` for why)."""
    try:
        return verify_token(secret, token)
    except InvalidToken:
        return None


def unsubscribe_url(public_url: str, secret: str, user_id: str, type_name: str, *, ttl: float) -> str:
    """The one-click link for (user, type), valid for ``ttl`` seconds (TIDINGS_UNSUBSCRIBE_TOKEN_TTL)."""
    return f"{public_url.rstrip('/')}/unsubscribe/{make_token(secret, user_id, type_name, ttl=ttl)}"
