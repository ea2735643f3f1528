"""Numbers and tables as text: the one formatting of the terminal report and the report page.

``None`` is shown as ``-`` everywhere; non-finite numbers as Python writes them (``inf``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def num(value: Any, digits: int = 4) -> str:
    """A number with ``digits`` decimals; ``-`` for ``None`` (or a bool)."""
    if value is None or isinstance(value, bool):
        return "-"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{number:.{digits}f}" if math.isfinite(number) else str(number)


def count(value: Any) -> str:
    """A count with thousands separators, no decimals: ``1,234``."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{float(value):,.0f}"


def pct(fraction: Any, digits: int = 0) -> str:
    """A fraction as a percentage: ``pct(0.25) == "25%"``."""
    return "-" if fraction is None else f"{100 * float(fraction):.{digits}f}%"


def signed_pct(percent: Any) -> str:
    """A percentage (already x100) with its sign: ``+1.25%``."""
    return "-" if percent is None else f"{float(percent):+.2f}%"


def sci(value: Any) -> str:
    return "-" if value is None else f"{float(value):.3e}"


def ci(interval: Iterable[float] | None, digits: int = 4) -> str:
    """An interval ``[low, high]``; ``-`` when there is none."""
    if not interval:
        return "-"
    lo, hi = list(interval)[:2]
    return f"[{num(lo, digits)}, {num(hi, digits)}]"


def g(value: float) -> str:
    """A float in few characters: 6 significant digits, 4 in scientific notation."""
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}" if abs(value) < 1e-3 or abs(value) >= 1e5 else f"{value:.6g}"


def plain(value: Any) -> str:
    """A JSON value as short text: ``-`` for None, lists in brackets, floats through :func:`g`."""
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(plain(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return g(value)
    return str(value)


def short(text: Any, width: int) -> str:
    """``text`` cut to ``width`` characters, ``...`` marking the cut."""
    text = "" if text is None else str(text)
    return text if len(text) <= width else text[: width - 3] + "..."


def text_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    """A plain-text table, as lines: numeric columns right-aligned, ``None`` as ``-``."""
    cells = [header] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    numeric = [all(_is_number(row[i]) for row in cells[1:]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if number else c.ljust(w) for c, w, number in zip(row, widths, numeric)
        ).rstrip()

    return [line(cells[0]), line(["-" * w for w in widths])] + [line(r) for r in cells[1:]]


def titled_table(title: str, header: list[str], rows: list[list[Any]], limit: int, *,
                 more: bool = True) -> list[str]:
    """A title, the first ``limit`` rows as a table, a line for the rest, a blank line."""
    lines = [title, *text_table(header, rows[:limit])]
    if more and len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more in summary.json")
    return [*lines, ""]


def _is_number(text: str) -> bool:
    try:
        float(text.rstrip("%").replace(",", ""))
    except ValueError:
        return text == "-"
    return True
