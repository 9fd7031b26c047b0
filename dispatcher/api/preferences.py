"""The caller's preferences (user token): what they get per type and channel, and their time settings.

``GET`` shows what routing (dispatcher/pipeline/routing.py) decides for the caller now, the function
ingest plans deliveries with and `tidings prefs show` prints, so what the API shows is what happens.
``PUT`` and ``PATCH`` apply ``tidings.preferences.set`` (and ``tidings.user.upsert`` for the time
settings) through the same code as the bus and the CLI, at once and in one transaction.

The user acts on their own data only: the user id is the token's, never the body's, and the commands
carry no authority beyond that (not *privileged*). They apply as an operator's do (*operator*): the
user's latest choice wins even over a record a producer dated ahead of our clock, instead of being
dropped as "stale".
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from channels import channel_names
from dispatcher.core import clock
from dispatcher.core.authority import Sender
from dispatcher.core.catalog import Catalog, NotificationType
from dispatcher.core.errors import InvalidEvent
from dispatcher.core.events import CloudEvent
from dispatcher.pipeline.ingest import ingest_event
from dispatcher.pipeline.routing import DIGEST_MODE, locked, plan_deliveries
from dispatcher.storage.models import DeliveryStatus, User

from .auth import current_user
from .control import unprocessable
from .database import session
from .state import api_state

router = APIRouter(tags=["preferences"])

UserId = Annotated[str, Depends(current_user)]
Mode = Literal["immediate", "digest"]
IMMEDIATE: Mode = "immediate"
#: Where the commands of a user's own changes come from.
SOURCE = "/tidings/api/me"
#: A user changing their own settings: no authority beyond them, and their latest choice applies.
SELF = Sender(publisher=None, privileged=False, operator=True)
TIME_FIELDS = ("timezone", "digest_time", "quiet_start", "quiet_end")


# --- what GET shows ---------------------------------------------------------------------------------------------


class ChannelPreference(BaseModel):
    """One channel for one type, as routing decides it now."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(description="Whether a notification of this type reaches the caller on this channel.")
    mode: Mode | None = Field(
        description='On a channel with digests: "immediate" or "digest" while enabled, null while off. '
        "Null on the other channels."
    )
    locked: bool = Field(description="A critical type's channel: always on and immediate, whatever is set.")


class TypePreferences(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = Field(description="What a notification of this type is about, from the catalog.")
    channels: dict[str, ChannelPreference] = Field(description="By channel name, every channel that reaches users.")


class Preferences(BaseModel):
    """What the caller gets, per catalog type they can receive, and when (their local time settings)."""

    model_config = ConfigDict(extra="forbid")

    timezone: str = Field(description='An IANA time zone name, such as "Europe/Paris".')
    digest_time: str = Field(description='When the daily digest goes out, local "HH:MM".')
    quiet_start: str | None = Field(description='Quiet hours\' start, local "HH:MM"; null: no quiet hours.')
    quiet_end: str | None = Field(description='Quiet hours\' end, local "HH:MM"; null: no quiet hours.')
    types: dict[str, TypePreferences] = Field(description="By catalog type, every type the caller can receive.")


# --- what PUT and PATCH take --------------------------------------------------------------------------------------


class ChannelSetting(BaseModel):
    """One channel for one type, as the caller sets it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    enabled: bool
    mode: Mode | None = Field(
        default=None, description='"digest" only on a channel with digests; null or left out: "immediate".'
    )
    locked: bool | None = Field(
        default=None, description="Read-only: accepted, so that a GET body can be sent back as it is, and ignored."
    )


class TypeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    description: str | None = Field(
        default=None, description="Read-only: accepted, so that a GET body can be sent back as it is, and ignored."
    )
    channels: dict[str, ChannelSetting]


class PreferencesReplace(BaseModel):
    """PUT: the time settings, all of them (null: the default), and each listed type with every channel."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "timezone": "Europe/Paris",
                    "digest_time": "08:00",
                    "quiet_start": "22:00",
                    "quiet_end": "07:00",
                    "types": {
                        "match.started": {
                            "channels": {
                                "in_app": {"enabled": True},
                                "email": {"enabled": True, "mode": "digest"},
                                "discord": {"enabled": False},
                            }
                        }
                    },
                }
            ]
        },
    )

    timezone: str | None
    digest_time: str | None
    quiet_start: str | None
    quiet_end: str | None
    types: dict[str, TypeSettings]


class PreferencesChange(BaseModel):
    """PATCH: only what it names: a time setting (null: the default) or a (type, channel)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"types": {"match.started": {"channels": {"email": {"enabled": False}}}}}]},
    )

    timezone: str | None = None
    digest_time: str | None = None
    quiet_start: str | None = None
    quiet_end: str | None = None
    types: dict[str, TypeSettings] = Field(default_factory=dict)


# --- the handlers -----------------------------------------------------------------------------------------------


@router.get("/v1/me/preferences", response_model=Preferences, summary="The caller's preferences")
def get_preferences(request: Request, user_id: UserId) -> Preferences:
    """A user Tidings has no record of yet gets the defaults: the catalog's channels, no quiet hours."""
    with session():
        return preferences_of(user_id, api_state(request).catalog)


@router.put("/v1/me/preferences", response_model=Preferences, summary="Replace the caller's preferences")
def put_preferences(body: PreferencesReplace, request: Request, user_id: UserId) -> Preferences:
    """Sets the four time settings and, for each type listed, every channel; types not listed are kept."""
    return _apply(user_id, body, api_state(request).catalog, whole_types=True)


@router.patch("/v1/me/preferences", response_model=Preferences, summary="Change some of the caller's preferences")
def patch_preferences(body: PreferencesChange, request: Request, user_id: UserId) -> Preferences:
    """Sets the time settings and the (type, channel) pairs it names, each as given; the rest is kept."""
    return _apply(user_id, body, api_state(request).catalog, whole_types=False)


def preferences_of(user_id: str, catalog: Catalog) -> Preferences:
    """What routing decides for ``user_id`` now, per receivable type and channel, with their time settings."""
    user = User.get_or_none(User.id == user_id)
    channels = channel_names(addresses="user")
    digests = set(channel_names(digests=True))
    now = clock.now()
    types: dict[str, TypePreferences] = {}
    for name in catalog.public_names():
        planned = {p.channel: p for p in plan_deliveries(catalog.types[name], [user_id], channels, now=now)}
        views = {}
        for channel in channels:
            p = planned.get(channel)
            mode: Mode | None = None
            if p is not None and channel in digests:
                mode = "digest" if p.status == DeliveryStatus.DIGEST else IMMEDIATE
            views[channel] = ChannelPreference(enabled=p is not None, mode=mode, locked=p is not None and p.locked)
        types[name] = TypePreferences(description=catalog.types[name].description, channels=views)
    return Preferences(
        timezone=user.timezone if user else User.timezone.default,
        digest_time=user.digest_time if user else User.digest_time.default,
        quiet_start=user.quiet_start if user else None,
        quiet_end=user.quiet_end if user else None,
        types=types,
    )


def _apply(
    user_id: str, body: PreferencesReplace | PreferencesChange, catalog: Catalog, *, whole_types: bool
) -> Preferences:
    items = _preference_items(body.types, catalog, whole_types=whole_types)
    times = {name: getattr(body, name) for name in TIME_FIELDS if whole_types or name in body.model_fields_set}
    try:
        with session():  # both commands, or neither
            if times:
                _apply_now(catalog, "tidings.user.upsert", {"id": user_id, **times})
            if items:
                _apply_now(catalog, "tidings.preferences.set", {"user": user_id, "preferences": items})
            return preferences_of(user_id, catalog)
    except InvalidEvent as e:
        raise unprocessable(e, TIME_FIELDS) from None


def _apply_now(catalog: Catalog, type_name: str, data: dict[str, Any]) -> None:
    now = clock.now().replace(tzinfo=dt.UTC)
    event = CloudEvent(id=str(uuid.uuid4()), source=SOURCE, type=type_name, data=data, time=now)
    ingest_event(event, catalog, [], sender=SELF)


def _preference_items(types: dict[str, TypeSettings], catalog: Catalog, *, whole_types: bool) -> list[dict[str, Any]]:
    """The command's preferences list; a 422 naming each field that cannot be set, and why."""
    channels = channel_names(addresses="user")
    digests = channel_names(digests=True)
    receivable = set(catalog.public_names())
    errors: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []

    def refuse(location: tuple[str, ...], message: str) -> None:
        errors.append({"loc": ("body", "types", *location), "msg": message, "type": "value_error"})

    for type_name, settings in types.items():
        kind = catalog.get(type_name)
        if kind is None or type_name not in receivable:
            refuse((type_name,), "not a notification type you can receive (GET /v1/me/preferences lists them)")
            continue
        missing = [channel for channel in channels if channel not in settings.channels]
        if whole_types and missing:
            refuse(
                (type_name, "channels"),
                f"PUT sets a type as a whole: give every channel ({', '.join(channels)}); "
                f"missing: {', '.join(missing)}. PATCH changes only what it names",
            )
        for channel, setting in settings.channels.items():
            where = (type_name, "channels", channel)
            if channel not in channels:
                refuse(where, f"not a channel that reaches users: {', '.join(channels)}")
            elif (refusal := _refusal(kind, channel, setting, digests)) is not None:
                refuse((*where, refusal[0]), refusal[1])
            else:
                mode = setting.mode or IMMEDIATE
                items.append({"type": type_name, "channel": channel, "enabled": setting.enabled, "mode": mode})
    if errors:
        raise RequestValidationError(errors)
    return items


def _refusal(
    kind: NotificationType, channel: str, setting: ChannelSetting, digests: list[str]
) -> tuple[str, str] | None:
    """The field and the reason a setting cannot be stored as asked; None when it can."""
    if locked(kind, channel) and not setting.enabled:
        return "enabled", f"{kind.name} is critical: its {channel} channel is locked on and cannot be switched off"
    if setting.mode == DIGEST_MODE and channel not in digests:
        return "mode", f'"digest" is only for a channel with digests ({", ".join(digests)}), not {channel}'
    if setting.mode == DIGEST_MODE and kind.critical:
        return "mode", f"{kind.name} is critical: it always goes out at once, never in a digest"
    return None
