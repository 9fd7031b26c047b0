"""Delivery channels, one module each, listed in an explicit registry.

Nothing is discovered by scanning: a channel exists when it is named here.
"""

from __future__ import annotations

import importlib

from dispatcher.core.settings import Settings

from .base import Channel, Notification

#: Channel name -> "module:Class".
REGISTRY: dict[str, str] = {
    "in_app": "channels.in_app:InAppChannel",
    "email": "channels.email:SmtpChannel",
    "discord": "channels.discord:DiscordChannel",
    "webhook": "channels.webhook:WebhookChannel",
}


def channel_class(name: str) -> type[Channel]:
    """The class registered for ``name``; KeyError if there is none."""
    module_name, class_name = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def load_channel(name: str, settings: Settings) -> Channel:
    """A new instance of the channel registered as ``name``."""
    return channel_class(name)(settings)


__all__ = ["REGISTRY", "Channel", "Notification", "channel_class", "load_channel"]
