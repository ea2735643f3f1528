"""HTML building blocks of the report page: tables, key-value rows, figures with inline SVG,
verdicts, and any JSON value shown as it comes. Every text is escaped here (:func:`e`);
a cell that is already HTML is a :class:`Raw`.
"""

from __future__ import annotations

import html
import io
import json
import re
from typing import Any

from analysis.formatting import ci, plain

MAX_ROWS = 50  # rows per table; the rest are in summary.json


class Raw(str):
    """A table cell that is already HTML."""


def table(header: list[str], rows: list[list[Any]], *, table_id: str,
          highlight: list[bool] | None = None) -> str:
    shown = rows[:MAX_ROWS]
    head = "".join(f"<th>{e(h)}</th>" for h in header) if any(header) else ""
    body = []
    for i, row in enumerate(shown):
        cls = ' class="best"' if highlight and i < len(highlight) and highlight[i] else ""
        cells = "".join(cell(v) for v in row)
        body.append(f"<tr{cls}>{cells}</tr>")
    more = ""
    if len(rows) > MAX_ROWS:
        more = f'<p class="muted">{len(rows) - MAX_ROWS} more rows in summary.json.</p>'
    thead = f"<thead><tr>{head}</tr></thead>" if head else ""
    return f'<table id="{table_id}">{thead}<tbody>{"".join(body)}</tbody></table>{more}'


def cell(value: Any) -> str:
    if isinstance(value, Raw):
        return f"<td>{value}</td>"
    text = "-" if value is None else str(value)
    numeric = bool(re.fullmatch(r"[-+]?[\d,]*\.?\d+(e[-+]?\d+)?%?", text))
    return f'<td class="num">{e(text)}</td>' if numeric else f"<td>{e(text)}</td>"


def kv(key: str, value_html: str) -> str:
    return f"<tr><th>{e(key)}</th><td>{value_html}</td></tr>"


def figure(svg: str | None, fig_id: str, caption: str) -> str:
    if svg is None:
        return ""
    return f'<figure id="{fig_id}">{svg}<figcaption class="muted">{e(caption)}</figcaption>' \
           "</figure>"


def generic(obj: Any, depth: int = 0) -> str:
    """Any JSON value as HTML: dicts as tables or sub-sections, lists of dicts as tables."""
    if isinstance(obj, dict):
        scalars = {k: v for k, v in obj.items() if not isinstance(v, (dict, list))}
        nested = {k: v for k, v in obj.items() if isinstance(v, (dict, list))}
        parts = []
        if scalars:
            rows = "".join(kv(k, value_html(k, v)) for k, v in scalars.items())
            parts.append(f"<table>{rows}</table>")
        level = min(3 + depth, 6)
        for key, value in nested.items():
            parts.append(f"<h{level}>{e(key.replace('_', ' '))}</h{level}>"
                         f"{generic(value, depth + 1)}")
        return "".join(parts)
    if isinstance(obj, list):
        if not obj:
            return '<p class="muted">(none)</p>'
        if all(isinstance(x, dict) for x in obj):
            columns: list[str] = []
            for x in obj:
                columns += [k for k in x if k not in columns]
            body = "".join(
                "<tr>" + "".join(f"<td>{value_html(c, x.get(c))}</td>" for c in columns)
                + "</tr>" for x in obj)
            head = "".join(f"<th>{e(c)}</th>" for c in columns)
            return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        return f"<p>{e(', '.join(plain(x) for x in obj))}</p>"
    return f"<p>{e(plain(obj))}</p>"


def value_html(key: str, value: Any) -> str:
    if isinstance(value, (dict, list)):
        if isinstance(value, list) and len(value) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return e(ci(value))  # an interval
        return f"<code>{e(json.dumps(value, default=str))}</code>"
    if "verdict" in str(key).lower() and isinstance(value, str):
        return verdict(value)
    return e(plain(value))


def verdict(text: Any) -> str:
    if text is None:
        return "-"
    low = str(text).lower()
    cls = ""
    if "better" in low and "not" not in low:
        cls = "verdict-better"
    elif "worse" in low and "not" not in low:
        cls = "verdict-worse"
    return f'<span class="{cls}">{e(text)}</span>' if cls else e(text)


def svg(draw: Any, data: Any, salt: str) -> str | None:
    """``draw(data)`` (an ``analysis.charts`` figure) as an inline ``<svg>`` element: text as
    text, ids unique to the figure; ``None`` when there is no data to draw."""
    import matplotlib  # lazy: matplotlib is slow to import

    if not data:
        return None
    fig = draw(data)
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # drop the XML declaration and DOCTYPE


def e(value: Any) -> str:
    """``value`` as escaped HTML text (``None``: empty)."""
    return html.escape("" if value is None else str(value))


def slug(key: str) -> str:
    """``key`` as an HTML id: anything but letters, digits, ``_`` and ``-`` becomes ``-``."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", key)
