"""A ladder's own outputs, beside its summary.json's ``ladder`` section: the plot (each fitted
parameter's optimum per size with its interval, the log-log fit, the prediction at the target
size with its band) and ``target_spec.yaml``, the target search as a spec to run by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from analysis.io import write_text
from analysis.plots import save_png
from ngpt_tune.ladder_plan import active_ladder, first_steps, target_mapping, target_ranges
from ngpt_tune.request import RunRequest, build_spec

LADDER_PLOT, TARGET_SPEC = "ladder.png", "target_spec.yaml"

AXIS_LABELS = {"params": "non-embedding parameters", "width": "width (n_embd)",
               "depth": "depth (n_layer)"}


def plot_ladder(section: dict[str, Any], path: Path) -> Path | None:
    """One panel per fitted parameter, log-log: optima with intervals (hollow: a fallback
    estimate), the fitted line extended to the target, the prediction and its band."""
    fits = section.get("fits") or {}
    if not fits:
        return None
    from matplotlib.figure import Figure  # lazy: matplotlib is slow to import

    fig = Figure(figsize=(7.0, 3.2 * len(fits)), layout="constrained")
    axes = fig.subplots(len(fits), 1, squeeze=False)[:, 0]
    sizes = np.array([r["size"] for r in section["rungs"]])
    target = section["target"]["size"]
    span = np.geomspace(min(sizes.min(), target), max(sizes.max(), target), 50)
    level = f"{section.get('confidence', 0.9):.0%}"
    for ax, (key, fit) in zip(axes, fits.items()):
        optima = [r["optima"][key] for r in section["rungs"]]
        value = np.array([o["value"] for o in optima])
        err = [value - [o["low"] for o in optima], [o["high"] for o in optima] - value]
        ax.errorbar(sizes, value, yerr=np.clip(err, 0, None), fmt="none", color="tab:blue",
                    capsize=3)
        quad = np.array([o["method"] == "quadratic" for o in optima])
        ax.scatter(sizes[quad], value[quad], color="tab:blue", zorder=3,
                   label=f"optimum per size, {level} CI")
        if (~quad).any():
            ax.scatter(sizes[~quad], value[~quad], facecolor="white", edgecolor="tab:red",
                       zorder=3, label="FALLBACK: no convex fit (best 3), in the trend")
        ax.plot(span, np.exp(fit["intercept"]) * span ** fit["exponent"], color="black", lw=1,
                label=f"fit: exponent {fit['exponent']:.2f} "
                      f"[{fit['exponent_ci'][0]:.2f}, {fit['exponent_ci'][1]:.2f}]")
        lo, hi = fit["prediction_ci"]
        ax.errorbar([target], [fit["prediction"]],
                    yerr=[[fit["prediction"] - lo], [hi - fit["prediction"]]], fmt="D",
                    color="tab:orange", capsize=4, label=f"prediction, {level} interval")
        ax.axhspan(lo, hi, color="tab:orange", alpha=0.12)
        ax.set(xscale="log", yscale="log", xlabel=AXIS_LABELS.get(section["axis"], "size"),
               ylabel=key, title=f"ladder: optimum of {key} vs size")
        ax.legend(fontsize=7)
    return save_png(fig, path)


def _warnings(section: dict[str, Any]) -> str:
    """YAML comments heading target_spec.yaml: sizes whose optimum fell back, unequal budgets."""
    lines = [f"# WARNING: {key}: no convex fit at size(s) "
             + ", ".join(f"{s:,.0f}" for s in fit["fallback_sizes"])
             + " (best-3 fallback, counted in the trend)"
             for key, fit in (section.get("fits") or {}).items() if fit.get("fallback_sizes")]
    if section.get("budget_warning"):
        lines.append(f"# WARNING: {section['budget_warning']}")
    return "".join(f"{line}\n" for line in lines)


def write_ladder_files(folder: Path, record: dict[str, Any], section: dict[str, Any]) -> list[Path]:
    """``ladder.png`` and ``target_spec.yaml`` in a ladder campaign's ``folder``."""
    spec = build_spec(RunRequest.from_record(record["request"]), check_data=False)
    ladder = active_ladder(spec)
    ranges = target_ranges(spec, ladder, section["fits"])
    steps = (ladder.steps_for(len(ladder.sizes), first_steps(spec))
             if ladder.tokens != "equal" else None)
    raw = yaml.safe_load(record["request"]["spec_yaml"])
    written = [write_text(folder / TARGET_SPEC,
                          _warnings(section) + yaml.safe_dump(target_mapping(
                              raw, ladder, ranges, steps=steps,
                              prediction={k: f["prediction"] for k, f in section["fits"].items()}),
                              sort_keys=False))]
    plot = plot_ladder(section, folder / LADDER_PLOT)
    return [*written, *([plot] if plot else [])]
