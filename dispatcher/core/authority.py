"""Who may publish what: control commands and restricted types need an authorised publisher.

The publisher is the RabbitMQ user that published the message, from the AMQP
``user_id`` property, which RabbitMQ checks against the connection's user (a
message claiming another user is refused by the broker itself). It proves
something only when every producer has its own RabbitMQ user: docs/security.md.

Authorised users (TIDINGS_COMMAND_USERS, and always Tidings' own user, the
one in TIDINGS_BROKER_URL) may send every control command and every type.
A restricted catalog type also admits the users in its ``publishers`` list.
``tidings.notification.cancel`` is open to every producer, but reaches only the
events of its own source and publisher (see cancel.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from dispatcher.core.catalog import Catalog
from dispatcher.core.errors import Unauthorized
from dispatcher.core.events import CloudEvent

#: Control commands any producer may send; each is scoped to the sender's own events.
OPEN_COMMANDS = frozenset({"tidings.notification.cancel"})


@dataclasses.dataclass(frozen=True)
class Sender:
    """Who an event comes from.

    ``publisher``: the RabbitMQ user (None: anonymous). ``privileged``: may send every
    command and every restricted type. ``operator``: the `tidings` CLI on the host, whose
    commands always apply, whatever time a stored record claims.
    """

    publisher: str | None = None
    privileged: bool = False
    operator: bool = False


#: The operator at the command line: full authority.
OPERATOR = Sender(publisher=None, privileged=True, operator=True)


class Authority:
    """The authorised RabbitMQ users, and the check every event from the bus passes."""

    def __init__(self, command_users: Iterable[str]) -> None:
        self.command_users = frozenset(command_users)

    def sender(self, publisher: str | None) -> Sender:
        return Sender(publisher=publisher, privileged=publisher is not None and publisher in self.command_users)

    def check(self, event: CloudEvent, sender: Sender, catalog: Catalog) -> None:
        """Raise Unauthorized (dead-lettered with the reason) unless ``sender`` may publish ``event``."""
        if sender.privileged:
            return
        if event.is_command:
            if event.type not in OPEN_COMMANDS:
                raise Unauthorized(
                    f"{event.type} is a control command and {describe(sender)} may not send it: "
                    "only the users in TIDINGS_COMMAND_USERS and Tidings' own user may"
                )
            return
        kind = catalog.get(event.type)
        if kind is not None and kind.publishers is not None and sender.publisher not in kind.publishers:
            allowed = ", ".join(sorted(kind.publishers)) or "none"
            raise Unauthorized(
                f"{event.type} is restricted and {describe(sender)} may not publish it: its "
                f"publishers in the catalog: {allowed}; or a user in TIDINGS_COMMAND_USERS"
            )


def describe(sender: Sender) -> str:
    """'RabbitMQ user "billing"', or why there is none, for rejection reasons."""
    if sender.publisher is None:
        return "an anonymous publisher (the message has no user_id property)"
    return f"RabbitMQ user {sender.publisher[:100]!r}"
