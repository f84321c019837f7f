"""MkDocs hook: a line ``<!-- settings: CLASS [GROUP] [python-only] -->`` in a page becomes the table of that
settings dataclass's fields (`st_lmtx.arguments.settings_table`), so the docs never repeat a help text."""

from __future__ import annotations

import re

from st_lmtx import arguments

MARKER = re.compile(r"^<!-- settings: (\w+)((?: [\w-]+)*) -->$", re.MULTILINE)


def render(markdown: str) -> str:
    def table(match: re.Match) -> str:
        cls = getattr(arguments, match[1])
        words = match[2].split()
        cli = "python-only" not in words
        groups = [w for w in words if w != "python-only"]
        return arguments.settings_table(cls, group=groups[0] if groups else None, cli=cli)

    return MARKER.sub(table, markdown)


def on_page_markdown(markdown: str, **kwargs) -> str:
    return render(markdown)
