"""Signed one-click unsubscribe links (RFC 8058) for List-Unsubscribe headers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()[:24])


def make_token(secret: str, user_id: str, type_name: str) -> str:
    """A token naming (user, type), signed with TIDINGS_SECRET_KEY."""
    payload = _b64(json.dumps([user_id, type_name], separators=(",", ":")).encode())
    return f"{payload}.{_signature(secret, payload)}"


def read_token(secret: str, token: str) -> tuple[str, str] | None:
    """(user_id, type) if the token is genuine, else None."""
    if not token.isascii():
        return None  # genuine tokens are base64url; hmac.compare_digest raises TypeError on non-ASCII str
    payload, _, signature = token.partition(".")
    if not hmac.compare_digest(signature, _signature(secret, payload)):
        return None
    try:
        user_id, type_name = json.loads(_unb64(payload))
    except (ValueError, TypeError):
        return None
    return user_id, type_name


def unsubscribe_url(public_url: str, secret: str, user_id: str, type_name: str) -> str:
    return f"{public_url.rstrip('/')}/unsubscribe/{make_token(secret, user_id, type_name)}"
