"""The JSON Schema of the publisher contract, generated from the catalog.

``tidings schema`` prints it; docs/cloudevent.schema.json is its output, and a
test keeps the two equal.
"""

from __future__ import annotations

from typing import Any

from channels import channel_names
from dispatcher.commands.registry import HANDLERS
from dispatcher.core.catalog import Catalog
from dispatcher.core.events import MAX_ID_LENGTH, MAX_RECIPIENTS

USER_ID = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH}
NULLABLE_STRING = {"type": ["string", "null"]}
HHMM = "^([01][0-9]|2[0-3]):[0-5][0-9]$"


def _when(type_condition: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    return {
        "if": {"properties": {"type": type_condition}, "required": ["type"]},
        "then": {"properties": {"data": data}},
    }


def _command_rules(catalog: Catalog) -> list[dict[str, Any]]:
    preference = {
        "type": "object",
        "required": ["type", "channel"],
        # What an item leaves out stays as it was (a new setting: unset, so the "*" one or the default applies).
        "anyOf": [{"required": ["enabled"]}, {"required": ["mode"]}],
        "properties": {
            "type": {"enum": [*catalog.public_names(), "*"]},
            "channel": {"enum": channel_names()},
            "enabled": {"type": "boolean"},
            "mode": {
                "enum": ["immediate", "digest"],
                "description": f"{' or '.join(channel_names(digests=True))} only: a daily digest instead",
            },
        },
    }
    user = {
        "id": USER_ID,
        "email": {"type": ["string", "null"], "format": "email"},
        "name": NULLABLE_STRING,
        "timezone": {"type": ["string", "null"], "description": 'IANA time zone name, e.g. "Europe/Paris".'},
        "locale": NULLABLE_STRING,
        "discord_webhook_url": {"type": ["string", "null"], "format": "uri", "pattern": "^https://"},
        "digest_time": {"type": ["string", "null"], "pattern": HHMM, "description": "local time of the digest"},
        "quiet_start": {"type": ["string", "null"], "pattern": HHMM, "description": "local; with quiet_end"},
        "quiet_end": {"type": ["string", "null"], "pattern": HHMM},
    }
    subscription = {"topic": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH}, "user": USER_ID}
    return [
        _when(
            {"const": "tidings.user.upsert"}, {"required": ["id"], "properties": user, "additionalProperties": False}
        ),
        _when(
            {"const": "tidings.preferences.set"},
            {
                "required": ["user", "preferences"],
                "properties": {"user": USER_ID, "preferences": {"type": "array", "minItems": 1, "items": preference}},
            },
        ),
        _when(
            {"enum": ["tidings.topic.subscribe", "tidings.topic.unsubscribe"]},
            {"required": ["topic", "user"], "properties": subscription},
        ),
        _when(
            {"const": "tidings.notification.cancel"},
            {
                "description": "{source, id} or {cancel_key}; recipients limits it to those users.",
                "anyOf": [{"required": ["source", "id"]}, {"required": ["cancel_key"]}],
                "properties": {
                    "source": {"type": "string"},
                    "id": {"type": "string"},
                    "cancel_key": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH},
                    "recipients": {"type": "array", "items": USER_ID},
                },
            },
        ),
        _when(
            {"const": "tidings.standings.override"},
            {
                "required": ["scope", "team_id", "rank", "reason", "actor"],
                "description": "Set a team's final rank in a tournament (rank null revokes it); audited.",
                "properties": {
                    "scope": {"type": "string", "pattern": "^tournament:.+", "maxLength": 11 + MAX_ID_LENGTH},
                    "team_id": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH},
                    "rank": {"type": ["integer", "null"], "minimum": 1},
                    "reason": {"type": "string", "minLength": 1, "maxLength": 1000},
                    "actor": {"type": "string", "minLength": 1, "maxLength": 255},
                },
                "additionalProperties": False,
            },
        ),
        _when(
            {"const": "tidings.webhook.upsert"},
            {
                "required": ["id"],
                "description": "A new endpoint needs url, secret and types; fields absent are kept.",
                "properties": {
                    "id": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH},
                    "url": {"type": "string", "pattern": "^https://", "maxLength": 2048},
                    "secret": {"type": "string", "pattern": "^whsec_[A-Za-z0-9+/=]+$"},
                    "types": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 100,
                        "items": {"type": "string", "minLength": 1, "maxLength": 255},
                    },
                    "enabled": {"type": "boolean"},
                    "owner": {"type": ["string", "null"]},
                },
                "additionalProperties": False,
            },
        ),
    ]


def event_schema(catalog: Catalog) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) for one event body, with each type's required data keys."""
    per_type = [
        _when(
            {"const": kind.name},
            {"required": list(kind.required), "anyOf": [{"required": ["recipients"]}, {"required": ["topic"]}]},
        )
        for kind in catalog.types.values()
        if not kind.internal
    ]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://tidings.invalid/docs/cloudevent.schema.json",
        "title": "Tidings event (CloudEvents 1.0, structured JSON mode)",
        "description": (
            "The JSON body of a message published to the Tidings exchange. Generated from templates/catalog.toml "
            "by `tidings schema`. Not expressible here, see docs/contract.md: the body size limit "
            "(TIDINGS_MAX_EVENT_BYTES, default 262144 bytes) and the routing key (must equal `type`)."
        ),
        "type": "object",
        "required": ["specversion", "id", "source", "type", "data"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {
                "type": "string",
                "minLength": 1,
                "description": "Unique per source; (source, id) identifies the event. Reuse it on retries, "
                "never for a new event.",
            },
            "source": {
                "type": "string",
                "minLength": 1,
                "format": "uri-reference",
                "examples": ["/tournaments", "https://svc.example/matches"],
            },
            "type": {
                "description": "A catalog notification type or a tidings.* control command; also the AMQP routing key.",
                "enum": [*catalog.public_names(), *sorted(HANDLERS)],
            },
            "time": {"type": "string", "format": "date-time", "description": "RFC 3339."},
            "subject": {"type": "string"},
            "datacontenttype": {"type": "string", "pattern": "^application/json"},
            "data": {
                "type": "object",
                "properties": {
                    "recipients": {
                        "type": "array",
                        "maxItems": MAX_RECIPIENTS,
                        "items": USER_ID,
                        "description": "User ids that receive the notification.",
                    },
                    "topic": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": MAX_ID_LENGTH,
                        "description": "Every user subscribed to this topic receives the notification.",
                    },
                    "url": {
                        "type": "string",
                        "format": "uri",
                        "pattern": "^https?://",
                        "description": "The link to act on (button in emails, link in-app).",
                    },
                    "deliver_at": {
                        "type": "string",
                        "format": "date-time",
                        "description": "Deliver then (RFC 3339); absent or past: now.",
                    },
                    "cancel_key": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": MAX_ID_LENGTH,
                        "description": "The producer's own key for tidings.notification.cancel.",
                    },
                },
                "additionalProperties": True,
            },
        },
        "additionalProperties": True,
        "allOf": [*per_type, *_command_rules(catalog)],
    }
