"""Templates: templates/<type>/subject.txt, body.txt and body.html, rendered by jinja2.

HTML is autoescaped; text is not (it is never interpreted as markup). The
subject is folded onto one line so it can never inject a header.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import jinja2


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
            subject=" ".join(subject.split())[:250],
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
