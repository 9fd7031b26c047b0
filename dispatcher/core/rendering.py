"""Templates: templates/<type>/subject.txt, body.txt and body.html, rendered by jinja2.

HTML is autoescaped; text is not (it is never interpreted as markup). The
subject goes through :func:`one_line`, so it can never inject or spoof a header.
body.txt is the notification's text (the in-app body, Discord's description); the
email's text part wraps it in templates/_layouts/email.txt (greeting and footer), as
body.html extends templates/_layouts/email.html, so that both parts say the same.

Templates see ``product`` (TIDINGS_PRODUCT_NAME and TIDINGS_PRODUCT_URL, given by the caller;
the defaults when not) and two filters: ``ordinal`` (2 or "2" -> "2nd"; "2nd" stays) and
``rank`` (2 -> "#2"; "2nd" stays).
"""

from __future__ import annotations

import dataclasses
import functools
import unicodedata
from pathlib import Path
from typing import Any

import jinja2

from dispatcher.core.settings import DEFAULT_PRODUCT_NAME

#: Unicode categories :func:`one_line` removes: controls, format characters (bidi overrides,
#: embeddings and isolates, zero-width characters, soft hyphens) and lone surrogates.
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})
#: What templates see as ``product`` when the context names none.
DEFAULT_PRODUCT: dict[str, str | None] = {"name": DEFAULT_PRODUCT_NAME, "url": None}
#: The email's text part: the notification's text inside a greeting and a footer.
EMAIL_TEXT_LAYOUT = "_layouts/email.txt"
#: The parts of :class:`Rendered`; a channel renders only those it uses (Channel.renders).
PARTS = frozenset({"subject", "text", "html", "email_text"})


def one_line(text: str) -> str:
    """``text`` made safe for one header line or title, as people will read it.

    Every whitespace character (line breaks, tabs, U+000B, U+2028 and U+2029, no-break
    spaces) becomes a space and runs of spaces collapse to one, trimmed at both ends. Other
    control and format characters (Unicode categories Cc and Cf, which include the bidi
    overrides, embeddings and isolates U+202A-U+202E and U+2066-U+2069) and lone surrogates are
    removed: they can reverse or hide text (a name that looks like someone else) and some
    cannot go in a header at all. Note that this also drops the zero-width joiners inside
    emoji sequences, which then show as separate emoji.
    """
    if not (text.isascii() and text.isprintable()):  # the common case skips the scan below
        text = "".join(
            " " if ch.isspace() else ch
            for ch in text
            if ch.isspace() or unicodedata.category(ch) not in INVISIBLE_CATEGORIES
        )
    return " ".join(text.split())


def _whole_number(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None


def ordinal(value: Any) -> str:
    """A placement as people write it: 1 -> "1st", "2" -> "2nd", 11 -> "11th"; other text ("2nd", "top 8") as given."""
    number = _whole_number(value)
    if number is None:
        return str(value)
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def rank(value: Any) -> str:
    """A position in the rankings: 2 or "2" -> "#2"; other text ("2nd", "#2") as given."""
    number = _whole_number(value)
    return f"#{number}" if number is not None else str(value)


@dataclasses.dataclass(frozen=True)
class Rendered:
    """One notification as words: the subject (also the in-app title), text and HTML.

    ``email_text`` is the email's text part (``text`` with the greeting and footer the HTML part has),
    None when the templates folder has no templates/_layouts/email.txt.
    """

    subject: str
    text: str
    html: str
    email_text: str | None = None


class Renderer:
    """Renders a notification type's templates; one per process."""

    def __init__(self, templates_dir: Path) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(templates_dir)),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals["product"] = DEFAULT_PRODUCT
        self.env.filters["ordinal"] = ordinal
        self.env.filters["rank"] = rank

    def render(self, type_name: str, context: dict[str, Any], parts: frozenset[str] = PARTS) -> Rendered:
        """Render the ``parts`` asked for (all by default; those left out are empty); raises
        jinja2.TemplateError on a template bug."""
        subject = self.env.get_template(f"{type_name}/subject.txt").render(context) if "subject" in parts else ""
        text = ""
        if parts & {"text", "email_text"}:
            text = self.env.get_template(f"{type_name}/body.txt").render(context).strip() + "\n"
        email_text = None
        if "email_text" in parts:
            try:
                layout = self.env.get_template(EMAIL_TEXT_LAYOUT)
            except jinja2.TemplateNotFound:
                pass
            else:
                email_text = layout.render({**context, "body": text}).strip() + "\n"
        html = self.env.get_template(f"{type_name}/body.html").render(context) if "html" in parts else ""
        return Rendered(subject=one_line(subject)[:250], text=text, html=html, email_text=email_text)

    def render_optional(self, type_name: str, file_name: str, context: dict[str, Any]) -> str | None:
        """Render templates/<type>/<file_name> if it exists (a channel's own template), else None."""
        try:
            template = self.env.get_template(f"{type_name}/{file_name}")
        except jinja2.TemplateNotFound:
            return None
        return template.render(context)


@functools.lru_cache(maxsize=4)
def get_renderer(templates_dir: Path) -> Renderer:
    return Renderer(templates_dir)
