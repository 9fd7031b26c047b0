"""Topic subscriptions (API key): tidings.topic.subscribe and tidings.topic.unsubscribe over HTTP.

Both are idempotent: subscribing a subscriber again, or unsubscribing someone who never was, is a 204.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response

from dispatcher.core.api_keys import ApiKey
from dispatcher.core.errors import InvalidEvent

from .auth import api_key
from .control import apply_now, unprocessable
from .database import session
from .state import api_state

router = APIRouter(tags=["topics"])

Topic = Annotated[str, Path(description="The topic, as events name it in data.topic.")]
UserId = Annotated[str, Path(description="The Tidings user id.")]
UsersKey = Annotated[ApiKey, Depends(api_key("users"))]


def _change(request: Request, key: ApiKey, action: str, topic: str, user_id: str) -> Response:
    try:
        with session():
            apply_now(api_state(request).catalog, key, f"tidings.topic.{action}", {"topic": topic, "user": user_id})
    except InvalidEvent as e:
        raise unprocessable(e, path={"topic": "topic", "user": "user_id"}) from None
    return Response(status_code=204)


@router.put(
    "/v1/topics/{topic}/subscribers/{user_id}",
    status_code=204,
    response_class=Response,
    summary="Subscribe a user to a topic",
)
def subscribe(request: Request, topic: Topic, user_id: UserId, key: UsersKey) -> Response:
    return _change(request, key, "subscribe", topic, user_id)


@router.delete(
    "/v1/topics/{topic}/subscribers/{user_id}",
    status_code=204,
    response_class=Response,
    summary="Unsubscribe a user from a topic",
)
def unsubscribe(request: Request, topic: Topic, user_id: UserId, key: UsersKey) -> Response:
    return _change(request, key, "unsubscribe", topic, user_id)
