"""The figures of a ``benchmarks/gpu_check.sh`` run, as Markdown for RESULTS.md.

    python benchmarks/gpu_check_report.py OUT_DIR > OUT_DIR/gpu_check.md

Reads what the run left in OUT_DIR: ``steps.tsv`` (each step's exit status and seconds), the
last JSON line of ``throughput_*.log`` and ``compile_reuse.log``, and the two campaigns'
``trials.parquet``. Each check gets PASS or FAIL; the exit status is 1 when any step or check
failed.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd


def last_json(log: Path) -> dict | None:
    """The last line of ``log`` that is a JSON object (the benchmarks' record), or None."""
    if not log.is_file():
        return None
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def trials(out: Path, name: str) -> pd.DataFrame | None:
    path = out / name / "trials.parquet"
    return pd.read_parquet(path) if path.is_file() else None


def most_at_once(frame: pd.DataFrame) -> int:
    """The most trials that ran at the same time, from their start and end times."""
    events = sorted([(t, 1) for t in frame["started_at"].dropna()]
                    + [(t, -1) for t in frame["ended_at"].dropna()])
    running = best = 0
    for _, change in events:
        running += change
        best = max(best, running)
    return best


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git checkout)"


def report(out: Path) -> tuple[list[str], bool]:
    """The Markdown lines, and whether every step and check passed."""
    ok = True
    checks: list[str] = []

    def check(passed: bool, text: str) -> None:
        nonlocal ok
        ok &= passed
        checks.append(f"- {'PASS' if passed else 'FAIL'}: {text}")

    steps = [line.split("\t") for line in (out / "steps.tsv").read_text().splitlines()
             if line.strip()] if (out / "steps.tsv").is_file() else []
    eager, compiled = (last_json(out / f"throughput_{m}.log") for m in ("eager", "compiled"))
    device = (eager or compiled or {}).get("device", "unknown device")
    lines = [f"# GPU check: {device}", "",
             f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, commit {commit()}, "
             f"torch {(eager or compiled or {}).get('torch', '?')}; "
             "command: `bash benchmarks/gpu_check.sh`", "",
             "| step | exit | seconds |", "|---|---|---|"]
    for name, rc, seconds in steps:
        lines.append(f"| {name} | {rc}{' (time limit)' if rc in ('124', '137') else ''} | "
                     f"{seconds} |")
        check(rc == "0", f"step {name} exited {rc}")
    lines += ["", "## Throughput and MFU at 11x768, bf16 autocast", "",
              "| compile | batch | variant | step ms | tokens/s | MFU | peak GiB |",
              "|---|---|---|---|---|---|---|"]
    for mode, record in (("off", eager), ("on", compiled)):
        for size in (record or {}).get("sizes", []):
            for row in size["rows"]:
                mfu = f"{row['mfu']:.1%}" if "mfu" in row else "-"
                mem = f"{row['peak_mem_gib']:.1f}" if "peak_mem_gib" in row else "-"
                lines.append(f"| {mode} | {size['batch']} | {row['variant']} | "
                             f"{row['step_ms']:.1f} | {row['tokens_per_s']:,.0f} | {mfu} | {mem} |")
    reuse = last_json(out / "compile_reuse.log")
    lines += ["", "## Compile reuse on CUDA (11x768 at 32x128, two trials of one shape)", ""]
    if reuse:
        first = reuse["compiled"][0]["overhead_s"]
        lines.append(f"second trial's compile overhead: {reuse['second_over_first']:.1%} of the "
                     f"first's ({first:.1f} s); target <= 10%")
        check(reuse["second_over_first"] <= 0.10, "compile reuse <= 10% of the first trial's")
    else:
        lines.append("no figure (see compile_reuse.log)")
    packing = trials(out, "packing")
    lines += ["", "## 4 trials at gpus_per_trial 0.5", ""]
    if packing is not None:
        at_once = most_at_once(packing)
        lines.append(f"statuses {packing['status'].value_counts().to_dict()}; at most {at_once} "
                     f"at once; GPU per trial {sorted(set(packing['gpus'].dropna()))}; tokens/s "
                     f"per trial {', '.join(f'{v:,.0f}' for v in packing['tokens_per_s'])}")
        check(len(packing) == 4 and (packing["status"] == "completed").all(),
              "4 trials completed")
        check(at_once == 2 and set(packing["gpus"]) == {0.5}, "two trials shared the GPU")
    else:
        check(False, "the packing campaign left no trials.parquet")
    oom = trials(out, "oom")
    lines += ["", "## An out-of-memory trial", ""]
    if oom is not None:
        for _, row in oom.iterrows():
            lines.append(f"- {row['variant']}: {row['status']}, failures {row['failures']}, "
                         f"{row['error'] if isinstance(row['error'], str) else 'no error'}")
        big = oom[oom["variant"] == "too_big"]
        check(len(big) == 1 and big["status"].iloc[0] == "infeasible"
              and big["failures"].iloc[0] == 0 and "OutOfMemoryError" in str(big["error"].iloc[0]),
              "the CUDA out-of-memory trial is infeasible, not retried")
        check((oom[oom["variant"] == "fits"]["status"] == "completed").all(),
              "the trial that fits completed")
    else:
        check(False, "the out-of-memory campaign left no trials.parquet")
    return [*lines, "", "## Checks", "", *checks], ok


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_dir():
        print("usage: python benchmarks/gpu_check_report.py OUT_DIR (a gpu_check.sh folder)",
              file=sys.stderr)
        return 2
    lines, ok = report(Path(args[0]))
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
