"""Delivery channels, one module each, listed in an explicit registry.

Nothing is discovered by scanning: a channel exists when it is named here. Each channel's class
states its facts (channels.base.Channel: whom it addresses, quiet hours, digests, its Procfile
group); the rest of Tidings asks for them here (``channel_names(digests=True)``) instead of
naming channels.
"""

from __future__ import annotations

import importlib

from dispatcher.core.errors import ConfigError
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
    found = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(found, type) and issubclass(found, Channel)):
        raise TypeError(f"channels.REGISTRY[{name!r}] names {found!r}, which is not a Channel class")
    return found


def load_channel(name: str, settings: Settings) -> Channel:
    """A new instance of the channel registered as ``name``."""
    return channel_class(name)(settings)


def switched_off(settings: Settings) -> list[str]:
    """The registered channels TIDINGS_CHANNELS leaves out, in registry order (none when it is unset)."""
    return [name for name in REGISTRY if not settings.delivers(name)]


def check_switches(settings: Settings) -> None:
    """ConfigError if TIDINGS_CHANNELS names a channel that is not registered."""
    unknown = [name for name in settings.channels or () if name not in REGISTRY]
    if unknown:
        raise ConfigError(
            f"TIDINGS_CHANNELS names {', '.join(unknown)}, which is not a channel: "
            f"the channels are {', '.join(REGISTRY)}"
        )


def channel_classes() -> dict[str, type[Channel]]:
    """Every registered channel's class by name, in registry order: the ``channels`` to load the catalog with."""
    return {name: channel_class(name) for name in REGISTRY}


def channel_names(**facts: object) -> list[str]:
    """The registered channels whose classes have these facts, in registry order (all of them without any).

    ``channel_names(addresses="user")``, ``channel_names(digests=True)``, ``channel_names(process_group="hooks")``.
    """
    unknown = [fact for fact in facts if not hasattr(Channel, fact)]
    if unknown:
        raise TypeError(f"channels state no fact {', '.join(unknown)}")
    return [
        name
        for name, cls in channel_classes().items()
        if all(getattr(cls, fact) == value for fact, value in facts.items())
    ]


__all__ = ["REGISTRY", "Channel", "Notification", "channel_class", "channel_classes", "channel_names", "load_channel"]
