"""Self-contained HTML rendering of a report: images embedded as base64, tables as HTML tables,
no external stylesheet or script, so the single file can be mailed or archived."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from mtpkdot.atomic import staged
from mtpkdot.report.document import Block, Figure, Heading, Note, Table, Text, alt_text

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:0.6em 0 1.2em}
th,td{border:1px solid #bbb;padding:0.25em 0.6em;text-align:left}
th{background:#f0f0f0}
td{font-variant-numeric:tabular-nums}
figure{margin:1.2em 0}
figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:0.92em;color:#444}
.note{font-style:italic;color:#8a5a00}
code{background:#f4f4f4;padding:0 0.2em}
"""


def _inline(text: str) -> str:
    """Escape, then render the two inline markdown forms the report uses: `code` and **bold**."""
    s = html.escape(text)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)


def image_data_uri(path: Path) -> str:
    # staged: inside the report's file set a figure just drawn is still under its temporary name
    return "data:image/png;base64," + base64.b64encode(staged(path).read_bytes()).decode("ascii")


def render_html(blocks: list[Block], title: str) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style></head><body>",
    ]
    for b in blocks:
        if isinstance(b, Heading):
            level = min(max(b.level, 1), 6)
            parts.append(f"<h{level}>{_inline(b.text)}</h{level}>")
        elif isinstance(b, Text):
            if b.text:
                parts.append(f"<p>{_inline(b.text)}</p>")
            if b.items:
                parts.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Note):
            parts.append(f'<p class="note">Note: {_inline(b.text)}</p>')
        elif isinstance(b, Table):
            rows = ["<tr>" + "".join(f"<th>{_inline(h)}</th>" for h in b.headers) + "</tr>"]
            rows += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in b.rows]
            cap = f"<caption><strong>{_inline(b.caption)}</strong></caption>" if b.caption else ""
            parts.append(f"<table>{cap}{''.join(rows)}</table>")
        elif isinstance(b, Figure):
            parts.append(
                f'<figure><img alt="{html.escape(alt_text(b))}" src="{image_data_uri(b.path)}">'
                f"<figcaption>{_inline(b.caption)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
