"""A static HTML page for a sweep report: plain HTML and CSS, images beside it, no scripts.

It opens from disk in any browser (no server) and loads nothing from the network.
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .85em; margin: .6em 0; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
td { overflow-wrap: anywhere; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: .5em 0; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: .5em 1em; }
.muted { color: #777; }
"""


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return html.escape(str(value))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """An HTML table; numbers are shortened to 4 significant digits, None shows as a dash."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def image(path: Path, page_dir: Path, alt: str) -> str:
    """An ``<img>`` referencing ``path`` relative to the page, so the folder can be moved whole."""
    return f'<img src="{html.escape(os.path.relpath(path, page_dir))}" alt="{html.escape(alt)}">'


def section(title: str, *parts: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>{''.join(parts)}</section>"


def paragraph(text: str, css_class: str = "") -> str:
    attribute = f' class="{css_class}"' if css_class else ""
    return f"<p{attribute}>{html.escape(text)}</p>"


def page(title: str, sections: Sequence[str], notes: Mapping[str, str] | None = None) -> str:
    """The whole document: title, notes box, sections."""
    note_items = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>"
                         for k, v in (notes or {}).items())
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        # An empty icon, so that no browser asks the file system for /favicon.ico.
        "<link rel=\"icon\" href=\"data:,\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<div class=\"note\"><ul>{note_items}</ul></div>"
        + "".join(sections)
        + "</body></html>\n"
    )
