"""The report page's pieces: one self-contained HTML document (inline CSS, pictures as data: URIs, no
scripts, fonts or links to fetch), tables and sections. The pages themselves: `run_page`, `compare_page`."""

from __future__ import annotations

import base64
import math
from html import escape

from ftcli.progress import number

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1480px;
       padding: 0 16px; color: #1d2330; background: #f6f7f9; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 0 0 10px; }
.sub { color: #5b6475; margin-bottom: 18px; }
section { background: #fff; border: 1px solid #dde1e7; border-radius: 8px; padding: 14px 18px; margin: 14px 0; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; } .plots img { max-width: 100%; border: 1px solid #eceef2; }
table { border-collapse: collapse; font-size: 14px; margin: 4px 0 8px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #eceef2; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f0f2f5; }
td.better { color: #137333; } td.worse { color: #b3261e; }
pre { background: #f6f7f9; border: 1px solid #eceef2; padding: 10px; overflow-x: auto; font-size: 13px; }
.facts { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; font-size: 14px; }
.facts span:nth-child(odd) { color: #5b6475; }
.none { color: #888; font-style: italic; }
"""


def document(title: str, subtitle: str, sections: list[str]) -> str:
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{_CSS}</style></head>"
            f"<body><h1>{escape(title)}</h1><div class='sub'>{escape(subtitle)}</div>{''.join(sections)}"
            "</body></html>\n")


def section(heading: str, body: str, id: str) -> str:
    return f"<section id='{id}'><h2>{escape(heading)}</h2>{body}</section>"


def image(png: bytes, alt: str, id: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f"<img id='{id}' alt='{escape(alt)}' src='data:image/png;base64,{data}'>"


def plots(*images: str) -> str:
    return f"<div class='plots'>{''.join(images)}</div>"


def value(v) -> str:
    """A cell: numbers at a glance (progress.number), None as a dash, the rest as text."""
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return number(v) if math.isfinite(v) and abs(v) < 1e6 else f"{v:.4g}"
    return escape(str(v))


def table(header: list[str], rows: list[list], classes: list[list[str]] | None = None, id: str = "") -> str:
    """Rows of values (formatted by `value`; strings starting with '<' are already HTML)."""
    def cell(v, cls=""):
        text = v if isinstance(v, str) and v.startswith("<") else value(v)
        return f"<td class='{cls}'>{text}</td>" if cls else f"<td>{text}</td>"

    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(v, (classes[r][c] if classes else "")) for c, v in enumerate(row)) + "</tr>"
                   for r, row in enumerate(rows))
    attribute = f" id='{id}'" if id else ""
    return f"<table{attribute}><tr>{head}</tr>{body}</table>"


def facts(pairs: list[tuple[str, object]]) -> str:
    """A two-column list of labelled facts (those with a value)."""
    shown = "".join(f"<span>{escape(k)}</span><span>{value(v)}</span>" for k, v in pairs if v not in (None, "", {}))
    return f"<div class='facts'>{shown}</div>"


def none(text: str) -> str:
    return f"<p class='none'>{escape(text)}</p>"


def pre(text: str, id: str) -> str:
    return f"<pre id='{id}'>{escape(text)}</pre>"


def megabytes(n) -> str | None:
    return f"{n / 1e6:,.0f} MB" if isinstance(n, (int, float)) and n else None
