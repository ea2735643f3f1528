"""Scoring search campaigns against targets (benchmarks/search_efficiency.py): per method, the
expected running time (COCO's ERT), its ratio to ngpt-tune's with a bootstrap interval, a test
of the reach counts against ngpt-tune's (McNemar's exact test on the seeds the two share, since
a searcher seed fixes the campaign; Fisher's exact test when they share none), Holm's
correction across the peers, the Markdown table, and the merge of several runs' outputs into
one table. A method with one campaign (the grid, deterministic) gets no test.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path


def _stats(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


BOOT_ROUNDS = 2000
BOOT_SEED = 0


def summarise(campaigns: dict[str, list[dict]], targets: dict[str, float]) -> dict:
    """Per method and target: the charged tokens (mean, sd), how many campaigns reached it, the
    expected running time (COCO's ERT: all tokens spent by all campaigns until they reached the
    target or ended, over the number that reached it; infinite when none did), its ratio to
    ngpt-tune's with a 95% bootstrap interval (campaigns resampled within each method; on the
    shared seeds jointly), and the reach test against ngpt-tune's, raw and Holm-adjusted across
    the methods tested (``test_{target}``: ``mcnemar`` | ``fisher`` | None)."""
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
    shipped = campaigns.get("ngpt-tune")
    for method, row in table.items():
        for name in targets:
            row[f"ratio_{name}"] = _divide(row[f"ert_{name}"], table["ngpt-tune"][f"ert_{name}"]) \
                if shipped else None
            row[f"ratio_ci_{name}"] = None
            row[f"test_{name}"] = row[f"p_{name}"] = row[f"p_holm_{name}"] = None
            if shipped and method != "ngpt-tune" and len(campaigns[method]) >= 2:
                row[f"ratio_ci_{name}"] = ert_ratio_interval(campaigns[method], shipped, name)
                row[f"test_{name}"], row[f"p_{name}"] = reach_test(campaigns[method], shipped,
                                                                   name)
    if shipped:
        from statsmodels.stats.multitest import multipletests

        for name in targets:
            tested = [r for r in table.values() if r[f"p_{name}"] is not None]
            if tested:
                adjusted = multipletests([r[f"p_{name}"] for r in tested], method="holm")[1]
                for r, p in zip(tested, adjusted):
                    r[f"p_holm_{name}"] = float(p)
    return table


def reach_test(runs: list[dict], shipped: list[dict], name: str) -> tuple[str, float]:
    """McNemar's exact test on the seeds both methods ran (discordant pairs, binomial), or
    Fisher's exact test of the reach counts when they share no seed."""
    from scipy.stats import binomtest, fisher_exact

    ours = {r["seed"]: r["tokens_to"][name] is not None for r in shipped}
    shared = [r for r in runs if r["seed"] in ours]
    if shared:
        theirs_only = sum(r["tokens_to"][name] is not None and not ours[r["seed"]] for r in shared)
        ours_only = sum(r["tokens_to"][name] is None and ours[r["seed"]] for r in shared)
        n = theirs_only + ours_only
        return "mcnemar", float(binomtest(theirs_only, n).pvalue) if n else 1.0
    reached = sum(r["tokens_to"][name] is not None for r in runs)
    base = sum(ours.values())
    return "fisher", float(fisher_exact([[reached, len(runs) - reached],
                                         [base, len(shipped) - base]])[1])


def ert_ratio_interval(runs: list[dict], shipped: list[dict], name: str,
                       rounds: int = BOOT_ROUNDS, seed: int = BOOT_SEED) -> list[float]:
    """95% percentile bootstrap interval of ERT(method) / ERT(ngpt-tune): campaigns resampled
    with replacement, the shared seeds drawn jointly (pairs kept), the others on their own;
    inf where a resample reached the target in no campaign of the method."""
    import numpy as np

    rng = np.random.default_rng(seed)

    def arrays(rs: list[dict]) -> tuple:
        return (np.array([r["tokens_to"][name] or r["tokens_total"] for r in rs], float),
                np.array([r["tokens_to"][name] is not None for r in rs], float))

    ours = {r["seed"]: r for r in shipped}
    pairs = [(r, ours[r["seed"]]) for r in runs if r["seed"] in ours]
    ratios = np.empty(rounds)
    if pairs:
        (c1, h1), (c0, h0) = arrays([a for a, _ in pairs]), arrays([b for _, b in pairs])
        rest = arrays([r for r in shipped if r["seed"] not in {a["seed"] for a, _ in pairs}])
    else:
        c1, h1 = arrays(runs)
        c0, h0 = arrays(shipped)
        rest = (np.empty(0), np.empty(0))
    for b in range(rounds):
        i = rng.integers(0, len(c1), len(c1))
        j = i if pairs else rng.integers(0, len(c0), len(c0))
        k = rng.integers(0, len(rest[0]), len(rest[0]))
        spent0, hits0 = c0[j].sum() + rest[0][k].sum(), h0[j].sum() + rest[1][k].sum()
        ert1 = c1[i].sum() / h1[i].sum() if h1[i].sum() else math.inf
        ert0 = spent0 / hits0 if hits0 else math.inf
        ratios[b] = math.nan if math.isinf(ert0) and math.isinf(ert1) else (
            math.inf if math.isinf(ert1) or not ert0 else ert1 / ert0)
    ratios = np.sort(ratios[~np.isnan(ratios)])  # inf sorts last; quantiles by order, no interpolation
    if not len(ratios):
        return [math.nan, math.nan]
    last = len(ratios) - 1
    return [float(ratios[math.floor(0.025 * last)]), float(ratios[math.ceil(0.975 * last)])]


def _divide(a: float, b: float) -> float | None:
    if math.isinf(a) and math.isinf(b):
        return None
    return math.inf if math.isinf(a) or b == 0 else a / b


def _ratio(value: float | None) -> str:
    return "-" if value is None else "inf" if math.isinf(value) else f"{value:.2f}"


def _interval(values: list[float] | None) -> str:
    return "" if values is None else f" [{_ratio(values[0])}, {_ratio(values[1])}]"


def _p(row: dict, name: str) -> str:
    """The test, its raw p-value and Holm's, in full (2 significant digits, never rounded to 0)."""
    if row[f"p_{name}"] is None:
        return ""
    return f"{row[f'test_{name}']} p = {row[f'p_{name}']:.2g}, Holm {row[f'p_holm_{name}']:.2g}"


def _tokens(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:,.0f}"


def print_table(table: dict, targets: dict[str, float]) -> None:
    names = list(targets)
    head = " | ".join(f"reached {n} | ERT to {n} (tokens) | x ngpt-tune [95% CI] | reach test | "
                      f"tokens to {n}, charged (mean ± sd)" for n in names)
    print(f"| method | seeds | {head} | final best (mean ± sd) | campaign tokens |")
    print("|---" * (4 + 5 * len(names)) + "|")
    for method, row in table.items():
        cells = " | ".join(
            f"{row[f'reached_{n}']}/{row['seeds']} | {_tokens(row[f'ert_{n}'])} | "
            f"{_ratio(row[f'ratio_{n}'])}{_interval(row[f'ratio_ci_{n}'])} | {_p(row, n)} | "
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
