"""The event type's templates (the project's templates/), rendered with Jinja2 as Tidings' are laid out.

``<type>/subject.txt``, ``<type>/body.txt`` (wrapped in ``_layouts/email.txt`` for an email) and
``<type>/body.html`` (which extends ``_layouts/email.html``). HTML is autoescaped, text is not.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES = Path(os.environ.get("BENCH_TEMPLATES", Path(__file__).resolve().parents[2] / "templates"))

#: What the layouts read besides the event's data; url / unsubscribe_url stay None (no links).
PRODUCT = {"name": "Bench Arena", "url": None}

environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=jinja2.select_autoescape(["html"]),
)


def _context(event: dict[str, Any], user: dict[str, Any] | None) -> dict[str, Any]:
    return {"data": event["data"], "url": None, "unsubscribe_url": None, "product": PRODUCT, "user": user or {}}


def subject_and_text(event: dict[str, Any]) -> tuple[str, str]:
    """The subject (one line) and the plain body.txt: what an inbox row holds."""
    context = _context(event, None)
    subject = environment.get_template(f"{event['type']}/subject.txt").render(context)
    text = environment.get_template(f"{event['type']}/body.txt").render(context)
    return " ".join(subject.split()), text.strip()


def email_parts(event: dict[str, Any], user: dict[str, Any]) -> tuple[str, str, str]:
    """Subject, text part (body.txt in the text layout) and HTML part of the email to ``user``."""
    context = _context(event, user)
    subject, body = subject_and_text(event)
    text = environment.get_template("_layouts/email.txt").render(context, body=body)
    html = environment.get_template(f"{event['type']}/body.html").render(context)
    return subject, text, html
