"""Scoring search campaigns against targets (benchmarks/search_efficiency.py): per method, the
expected running time (COCO's ERT), its ratio to ngpt-tune's, Fisher's exact test of the reach
counts, the Markdown table, and the merge of several runs' outputs into one table.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path


def _stats(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(campaigns: dict[str, list[dict]], targets: dict[str, float]) -> dict:
    """Per method and target: the charged tokens (mean, sd), how many campaigns reached it, the
    expected running time (COCO's ERT: all tokens spent by all campaigns until they reached the
    target or ended, over the number that reached it; infinite when none did), its ratio to
    ngpt-tune's, and Fisher's exact test of the reach counts against ngpt-tune's."""
    from scipy.stats import fisher_exact

    table = {}
    for method, runs in campaigns.items():
        row = {"seeds": len(runs)}
        for name in targets:
            charged = [r["tokens_to"][name] or r["tokens_total"] for r in runs]
            reached = sum(r["tokens_to"][name] is not None for r in runs)
            row[f"tokens_to_{name}"] = _stats(charged)
            row[f"reached_{name}"] = reached
            row[f"ert_{name}"] = sum(charged) / reached if reached else math.inf
        row["best"] = _stats([r["best"] for r in runs if r["best"] is not None])
        row["tokens_total"] = _stats([r["tokens_total"] for r in runs])
        table[method] = row
    shipped = table.get("ngpt-tune")
    for row in table.values():
        for name in targets:
            row[f"ratio_{name}"] = _divide(row[f"ert_{name}"], shipped[f"ert_{name}"]) \
                if shipped else None
            row[f"fisher_p_{name}"] = float(fisher_exact(
                [[row[f"reached_{name}"], row["seeds"] - row[f"reached_{name}"]],
                 [shipped[f"reached_{name}"], shipped["seeds"] - shipped[f"reached_{name}"]]]
            )[1]) if shipped else None
    return table


def _divide(a: float, b: float) -> float | None:
    if math.isinf(a) and math.isinf(b):
        return None
    return math.inf if math.isinf(a) or b == 0 else a / b


def _ratio(value: float | None) -> str:
    return "-" if value is None else "inf" if math.isinf(value) else f"{value:.2f}"


def _tokens(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:,.0f}"


def print_table(table: dict, targets: dict[str, float]) -> None:
    names = list(targets)
    head = " | ".join(f"reached {n} | ERT to {n} (tokens) | x ngpt-tune | Fisher p | "
                      f"tokens to {n}, charged (mean ± sd)" for n in names)
    print(f"| method | seeds | {head} | final best (mean ± sd) | campaign tokens |")
    print("|---" * (4 + 5 * len(names)) + "|")
    for method, row in table.items():
        cells = " | ".join(
            f"{row[f'reached_{n}']}/{row['seeds']} | {_tokens(row[f'ert_{n}'])} | "
            f"{_ratio(row[f'ratio_{n}'])} | {_ratio(row[f'fisher_p_{n}'])} | "
            f"{row[f'tokens_to_{n}'][0]:,.0f} ± {row[f'tokens_to_{n}'][1]:,.0f}" for n in names)
        print(f"| {method} | {row['seeds']} | {cells} | {row['best'][0]:.4f} ± "
              f"{row['best'][1]:.4f} | {row['tokens_total'][0]:,.0f} |")


def merge(paths: list[Path]) -> dict:
    """The JSON records of several runs of one problem (the last record line of each output),
    their campaigns pooled per method and summarised again."""
    records = [json.loads([line for line in Path(p).read_text().splitlines()
                           if line.startswith('{"benchmark"')][-1]) for p in paths]
    first = records[0]
    keys = ("steps", "cap", "concurrency", "reference_best", "reference_points")
    for path, record in zip(paths, records):
        if any(record[k] != first[k] for k in keys):
            raise SystemExit(f"{path}: another problem than {paths[0]} ({', '.join(keys)})")
    campaigns: dict[str, list[dict]] = {}
    for record in records:
        for method, runs in record["campaigns"].items():
            known = {r["seed"] for r in campaigns.get(method, [])}
            campaigns.setdefault(method, []).extend(r for r in runs if r["seed"] not in known)
    table = summarise(campaigns, first["targets"])
    print(f"search_efficiency: {len(records)} runs merged ({', '.join(map(str, paths))}); "
          f"reference best {first['reference_best']:.4f}")
    print_table(table, first["targets"])
    record = {**first, "merged": [str(p) for p in paths], "commits": [r["commit"] for r in records],
              "seeds": max(len(runs) for runs in campaigns.values()), "table": table,
              "campaigns": campaigns}
    print(json.dumps(record))
    return record
