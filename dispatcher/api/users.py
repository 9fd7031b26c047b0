"""Users (API key): read one, create or change one through tidings.user.upsert, and see their inbox.

A user's Discord webhook URL embeds a token: it can be set here, never read back
(``has_discord_webhook`` says whether there is one). Their inbox is listed by the very handler of
``GET /v1/me/notifications`` (inbox.py), so support staff see exactly what the user sees.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict

from dispatcher.commands import inbox
from dispatcher.commands.registry import CHECKS
from dispatcher.core.api_keys import ApiKey
from dispatcher.core.errors import InvalidEvent
from dispatcher.storage.models import InboxItem, User

from . import inbox as inbox_api
from .auth import api_key
from .control import apply_now, check_egress, unprocessable
from .database import session
from .problems import not_found
from .state import api_state

router = APIRouter(tags=["users"])

UserId = Annotated[str, Path(description="The Tidings user id (the one events name in data.recipients).")]
ReadKey = Annotated[ApiKey, Depends(api_key("read"))]
UsersKey = Annotated[ApiKey, Depends(api_key("users"))]


class UserView(BaseModel):
    """A user as the API shows it: no secrets."""

    model_config = ConfigDict(extra="forbid")

    id: str
    email: str | None
    name: str | None
    timezone: str
    locale: str | None
    digest_time: str
    quiet_start: str | None
    quiet_end: str | None
    has_discord_webhook: bool


class UserChange(BaseModel):
    """The fields to set; a field left out is kept, null clears it (timezone and digest_time: their default).

    The values are checked by tidings.user.upsert, whose reason a refusal gives.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"email": "ana@example.com", "name": "Ana", "timezone": "Europe/Paris"}]},
    )

    email: str | None = None
    name: str | None = None
    timezone: str | None = None
    locale: str | None = None
    digest_time: str | None = None
    quiet_start: str | None = None
    quiet_end: str | None = None
    discord_webhook_url: str | None = None  # write-only: it embeds a token


def user_view(user: User) -> UserView:
    return UserView(
        id=user.id,
        email=user.email,
        name=user.name,
        timezone=user.timezone,
        locale=user.locale,
        digest_time=user.digest_time,
        quiet_start=user.quiet_start,
        quiet_end=user.quiet_end,
        has_discord_webhook=bool(user.discord_webhook_url),
    )


@router.get("/v1/users/{user_id}", response_model=UserView, summary="A user")
def get_user(user_id: UserId, key: ReadKey) -> UserView:
    with session():
        user = User.get_or_none(User.id == user_id)
        if user is None:
            raise not_found("user")
        return user_view(user)


@router.put("/v1/users/{user_id}", response_model=UserView, summary="Create or change a user")
def put_user(body: UserChange, request: Request, user_id: UserId, key: UsersKey) -> UserView:
    state = api_state(request)
    data = {"id": user_id, **body.model_dump(exclude_unset=True)}
    try:
        # The command's own check of the URL first, then where it leads.
        discord_url = CHECKS["discord_webhook_url"](data.get("discord_webhook_url"))
        if discord_url is not None:
            check_egress("discord_webhook_url", discord_url, state.settings)
        with session():
            apply_now(state.catalog, key, "tidings.user.upsert", data)
            return user_view(User.get(User.id == user_id))
    except InvalidEvent as e:
        raise unprocessable(e, UserChange.model_fields, path={"id": "user_id"}) from None


@router.get(
    "/v1/users/{user_id}/notifications",
    response_model=inbox_api.NotificationPage,
    summary="What a user sees in their inbox",
)
def list_user_notifications(
    request: Request,
    user_id: UserId,
    key: ReadKey,
    limit: Annotated[int, Query(ge=1, le=inbox.MAX_LIMIT, description="Notifications per page.")] = (
        inbox.DEFAULT_LIMIT
    ),
    cursor: Annotated[str | None, Query(max_length=200, description="The next_cursor of the previous page.")] = None,
    unread: Annotated[bool | None, Query(description="true: only unread ones; false: only read ones.")] = None,
    archived: Annotated[bool, Query(description="true: only archived ones; false: the others.")] = False,
    type: Annotated[str | None, Query(max_length=255, description="Only this catalog type.")] = None,
) -> inbox_api.NotificationPage:
    """The page ``GET /v1/me/notifications`` gives this user's own token, with the same parameters.

    404 for a user Tidings knows nothing of: neither upserted nor ever notified in-app.
    """
    with session():
        known = User.select().where(User.id == user_id).exists() or (
            InboxItem.select().where(InboxItem.user_id == user_id).exists()
        )
    if not known:
        raise not_found("user")
    return inbox_api.list_notifications(
        request, user_id, limit=limit, cursor=cursor, unread=unread, archived=archived, type=type
    )
