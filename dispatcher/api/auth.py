"""Who calls: an end user with a JWT the product's backend minted, or a service with an API key.

A user token is a JWT signed HS256 with TIDINGS_USER_TOKEN_SECRET whose ``sub`` is the Tidings user
id and whose ``exp`` is required and at most TIDINGS_USER_TOKEN_MAX_TTL after its ``iat`` (or after
now, without one). Times are checked with Tidings' clock. API keys are TIDINGS_API_KEYS
(core/api_keys.py), each with its scopes. Both come as ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any

import jwt
from fastapi import Request

from dispatcher.core import clock
from dispatcher.core.api_keys import ApiKey, find_key

from .problems import ApiError
from .state import ApiState, api_state

ALGORITHM = "HS256"
#: Seconds a token's times may be off Tidings' clock.
LEEWAY = 30
MAX_USER_ID_LENGTH = 255
MAX_TOKEN_LENGTH = 4096


class InvalidUserToken(Exception):
    """A user token that is malformed, forged, expired or too long-lived; the message says which."""


def unix_now() -> float:
    return clock.now().replace(tzinfo=dt.UTC).timestamp()


def mint_user_token(secret: str, user_id: str, *, ttl: float) -> str:
    """A user token for ``user_id``, valid for ``ttl`` seconds from now (what `tidings token` prints)."""
    now = math.floor(unix_now())
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + math.ceil(ttl)}, secret, algorithm=ALGORITHM)


def verify_user_token(secret: str, token: str, *, max_ttl: float) -> str:
    """The user id a genuine, unexpired user token names; else raise InvalidUserToken saying why."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidUserToken("the token is too long")
    try:
        # exp and iat are checked below against Tidings' clock, not the system's.
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["exp", "sub"], "verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
    except jwt.InvalidSignatureError:
        raise InvalidUserToken("the token's signature does not match") from None
    except jwt.PyJWTError as e:
        raise InvalidUserToken(f"the token is not a valid JWT ({e})") from None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > MAX_USER_ID_LENGTH:
        raise InvalidUserToken("the token's sub must be a user id")
    expires, issued, not_before = (_time(claims, name) for name in ("exp", "iat", "nbf"))
    now = unix_now()
    if expires is None:
        raise InvalidUserToken("the token has no exp")
    if expires <= now - LEEWAY:
        raise InvalidUserToken("the token has expired")
    if issued is not None and issued > now + LEEWAY:
        raise InvalidUserToken("the token's iat is in the future")
    if not_before is not None and not_before > now + LEEWAY:
        raise InvalidUserToken("the token is not valid yet (nbf)")
    if expires - (issued if issued is not None else now) > max_ttl + LEEWAY:
        raise InvalidUserToken(f"the token lives longer than TIDINGS_USER_TOKEN_MAX_TTL ({max_ttl:g} s)")
    return subject


def _time(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidUserToken(f"the token's {name} must be a number (Unix seconds)")
    return float(value)


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if there is one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def unauthorized(detail: str) -> ApiError:
    return ApiError(401, "Unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="tidings"'})


def _user_from(state: ApiState, token: str | None) -> str:
    secret = state.settings.user_token_secret
    if secret is None:
        raise ApiError(503, "Service Unavailable", "user tokens are not configured (TIDINGS_USER_TOKEN_SECRET)")
    if token is None:
        raise unauthorized("send a user token: Authorization: Bearer <token>")
    try:
        return verify_user_token(secret, token, max_ttl=state.settings.user_token_max_ttl)
    except InvalidUserToken as e:
        raise unauthorized(str(e)) from None


def current_user(request: Request) -> str:
    """Dependency: the id of the user whose token came with the request; 401 without a valid one."""
    return _user_from(api_state(request), bearer_token(request))


def current_user_or_query_token(request: Request) -> str:
    """Like current_user, but also takes ``?token=`` (EventSource cannot send headers)."""
    return _user_from(api_state(request), bearer_token(request) or request.query_params.get("token"))


def api_key(scope: str) -> Callable[[Request], ApiKey]:
    """Dependency factory: the API key that came with the request, which must grant ``scope``."""

    def dependency(request: Request) -> ApiKey:
        token = bearer_token(request)
        if token is None:
            raise unauthorized("send an API key: Authorization: Bearer <key>")
        key = find_key(api_state(request).settings.api_keys, token)
        if key is None:
            raise unauthorized("the API key is not one of TIDINGS_API_KEYS")
        if scope not in key.scopes:
            raise ApiError(403, "Forbidden", f"the API key {key.name!r} lacks the {scope!r} scope")
        return key

    dependency.__name__ = f"api_key_{scope}"
    return dependency
