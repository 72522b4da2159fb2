"""A report as a list of blocks, rendered once as markdown and once as self-contained HTML.

Keeping one structure for both outputs guarantees that ``report.md`` and ``report.html`` say the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mtpkdot.report.tables import markdown_table


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Text:
    """A paragraph; ``bullets`` turns it into a list (one item per line of ``items``)."""

    text: str = ""
    items: list[str] = field(default_factory=list)


@dataclass
class Note:
    """Something missing or skipped, shown in italics so a reader sees it was not silently dropped."""

    text: str


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    path: Path  # absolute path of the PNG
    caption: str
    title: str = ""  # short alt text; defaults to the part of the caption before its first colon


Block = Heading | Text | Note | Table | Figure


def render_markdown(blocks: list[Block], base: Path) -> str:
    """Markdown with figure links relative to ``base`` (the folder that holds report.md)."""
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append("#" * b.level + " " + b.text)
        elif isinstance(b, Text):
            if b.text:
                out.append(b.text)
            if b.items:
                out.append("\n".join(f"- {item}" for item in b.items))
        elif isinstance(b, Note):
            out.append(f"*Note: {b.text}*")
        elif isinstance(b, Table):
            if b.caption:
                out.append(f"**{b.caption}**")
            out.append(markdown_table(b.headers, b.rows))
        elif isinstance(b, Figure):
            rel = Path(b.path).relative_to(base).as_posix()
            out.append(f"![{alt_text(b)}]({rel})\n\n*{b.caption}*")
    return "\n\n".join(out) + "\n"


def alt_text(fig: Figure) -> str:
    text = fig.title or fig.caption.split(": ")[0]
    return text.replace("[", "(").replace("]", ")")
