"""Templates: templates/<type>/subject.txt, body.txt and body.html, rendered by jinja2.

HTML is autoescaped; text is not (it is never interpreted as markup). The
subject goes through :func:`one_line`, so it can never inject or spoof a header.
"""

from __future__ import annotations

import dataclasses
import functools
import unicodedata
from pathlib import Path
from typing import Any

import jinja2

#: Unicode categories :func:`one_line` removes: controls, format characters (bidi overrides,
#: embeddings and isolates, zero-width characters, soft hyphens) and lone surrogates.
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})


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


@dataclasses.dataclass(frozen=True)
class Rendered:
    """One notification as words: the subject (also the in-app title), text and HTML."""

    subject: str
    text: str
    html: str


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

    def render(self, type_name: str, context: dict[str, Any]) -> Rendered:
        """Render all three parts; raises jinja2.TemplateError on a template bug."""
        subject = self.env.get_template(f"{type_name}/subject.txt").render(context)
        return Rendered(
            subject=one_line(subject)[:250],
            text=self.env.get_template(f"{type_name}/body.txt").render(context).strip() + "\n",
            html=self.env.get_template(f"{type_name}/body.html").render(context),
        )

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
