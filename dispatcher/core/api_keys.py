"""API keys for services and operators (TIDINGS_API_KEYS), and the scopes they grant.

TIDINGS_API_KEYS is a comma-separated list of ``name:scopes:key``. ``scopes`` joins scope names
with ``+``; ``key`` is the key itself (at least 32 characters from ``A-Z a-z 0-9 - _ . ~``) or
``sha256:<hex>``, its SHA-256 digest, so that the environment need not hold the key. For example::

    TIDINGS_API_KEYS="billing:events:sha256:9f86d0…, support:read+schedules:kS3v…"

A key is looked up by its digest and compared in constant time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re

#: What each scope lets a key do.
SCOPES: dict[str, str] = {
    "events": "publish ordinary events (POST /v1/events)",
    "commands": "publish control commands and restricted types with Tidings' authority",
    "read": "read deliveries, schedules, users and what a user sees",
    "schedules": "cancel scheduled notifications",
    "users": "change users and topic subscriptions",
    "webhooks": "manage webhook endpoints",
    "rankings": "read standings, series and the audit trail of placement overrides",
    "overrides": "set and revoke placement overrides in a tournament's standings",
}
MIN_KEY_LENGTH = 32
_KEY_CHARS = re.compile(r"[A-Za-z0-9._~-]+")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


@dataclasses.dataclass(frozen=True)
class ApiKey:
    """One configured key: its name (in logs and as its publisher identity), its SHA-256 and its scopes."""

    name: str
    digest: bytes
    scopes: frozenset[str]

    def __repr__(self) -> str:  # the digest is not secret, but it has no business in logs either
        return f"ApiKey(name={self.name!r}, scopes={sorted(self.scopes)!r})"


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def parse_api_keys(value: str) -> tuple[ApiKey, ...]:
    """Parse TIDINGS_API_KEYS; raise ValueError naming the bad entry (never echoing a key)."""
    keys: list[ApiKey] = []
    for position, entry in enumerate((part.strip() for part in value.split(",")), start=1):
        if not entry:
            continue
        name, _, rest = entry.partition(":")
        scopes_text, _, key = rest.partition(":")
        where = f"entry {position}"
        if not _NAME.fullmatch(name):
            raise ValueError(f"{where}: the name must be lowercase letters, digits, '-' or '_' (name:scopes:key)")
        where = f"entry {position} ({name})"
        scopes = frozenset(scopes_text.split("+")) if scopes_text else frozenset()
        if not scopes or not scopes <= SCOPES.keys():
            raise ValueError(f"{where}: scopes must be one or more of {', '.join(SCOPES)} joined by '+'")
        if key.startswith("sha256:"):
            if not _DIGEST.fullmatch(key):
                raise ValueError(f"{where}: sha256: must be followed by 64 lowercase hex digits")
            digest = bytes.fromhex(key.removeprefix("sha256:"))
        elif len(key) >= MIN_KEY_LENGTH and _KEY_CHARS.fullmatch(key):
            digest = key_digest(key)
        else:
            raise ValueError(
                f"{where}: the key must be sha256:<hex> or at least {MIN_KEY_LENGTH} characters of "
                "A-Z a-z 0-9 . _ ~ - (make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        if any(existing.name == name for existing in keys):
            raise ValueError(f"{where}: the name is listed twice")
        if any(hmac.compare_digest(existing.digest, digest) for existing in keys):
            raise ValueError(f"{where}: the same key is listed twice")
        keys.append(ApiKey(name=name, digest=digest, scopes=scopes))
    return tuple(keys)


def find_key(keys: tuple[ApiKey, ...], presented: str) -> ApiKey | None:
    """The configured key ``presented`` is, if any. Every key is compared, in constant time."""
    digest = key_digest(presented)
    found = None
    for key in keys:
        if hmac.compare_digest(key.digest, digest):
            found = key
    return found
