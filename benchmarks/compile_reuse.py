"""What torch.compile costs per trial when trials of one shape follow each other in one process.

A reused Ray worker runs trial after trial; trials of a campaign differ in numbers (alpha, a
fixed logit scale, the gate's init, lr, seed) far more often than in shapes. Here the trials
run in one process, as in such a worker, each with another alpha, first compiled
(``train.compile: on``) and then eager. For each trial:

    first     the first optimiser step and the first evaluation (where compilation happens)
    steady    the median of the later steps, and a later evaluation
    overhead  first - steady: the compilation (and, eager, the first-step allocations)

It prints the second compiled trial's overhead as a fraction of the first's (target on CPU:
<= 10%), and the whole trial's wall time compiled and eager. Inductor's caches go to a fresh
temporary folder, so the first trial compiles cold (``--warm-disk`` keeps the default folder).

    python benchmarks/compile_reuse.py                       # 2x64 (configs/tiny.yaml's shape)
    python benchmarks/compile_reuse.py --size 11x768 --steps 3 --batch 32x128
    python benchmarks/compile_reuse.py --smoke
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import tempfile
import time

import torch

from ngpt_tune.compiling import use_compile_cache
from ngpt_tune.config import Config
from ngpt_tune.train import Trainer, configure_process, pick_device


def make_config(args: argparse.Namespace, alpha: float, compile_: str) -> Config:
    n_layer, n_embd = (int(v) for v in args.size.split("x"))
    batch, block = (int(v) for v in args.batch.split("x"))
    return Config.from_dict({
        "model": {"n_layer": n_layer, "n_embd": n_embd, "n_head": max(1, n_embd // 16),
                  "block_size": block, "alpha": alpha,
                  "gated_residuals": args.gated},
        "data": {"dir": "builtin", "batch_size": batch, "val_tokens": batch * block},
        "train": {"steps": args.steps, "device": args.device, "compile": compile_,
                  "threads": args.threads},
    })


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def trial(config: Config) -> dict:
    """One trial's timings: first step + first evaluation, then the steady state."""
    device = pick_device(config)
    configure_process(config, device)
    start = time.perf_counter()
    trainer = Trainer.create(config, device)
    try:
        sync(device)
        create_s = time.perf_counter() - start
        steps = []
        for _ in range(config.train.steps):
            t = time.perf_counter()
            trainer.train_step()
            sync(device)
            steps.append(time.perf_counter() - t)
        evals = []
        for _ in range(2):
            t = time.perf_counter()
            trainer.evaluate()
            evals.append(time.perf_counter() - t)
    finally:
        trainer.release()
    steady_step = statistics.median(steps[1:]) if len(steps) > 1 else steps[0]
    first = steps[0] + evals[0]
    steady = steady_step + evals[1]
    return {"alpha": config.model.alpha, "create_s": create_s, "first_s": first,
            "steady_step_s": steady_step, "overhead_s": max(0.0, first - steady),
            "wall_s": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="2x64", help="n_layer x n_embd (heads of 16)")
    parser.add_argument("--batch", default="8x64", help="batch x block")
    parser.add_argument("--alphas", default="0.15,0.28,0.05",
                        help="one trial per alpha, in this order")
    parser.add_argument("--steps", type=int, default=10, help="optimiser steps per trial")
    parser.add_argument("--gated", action="store_true", help="gated residuals")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    parser.add_argument("--warm-disk", action="store_true",
                        help="keep inductor's usual on-disk cache (default: a fresh folder)")
    parser.add_argument("--smoke", action="store_true", help="1x32, 2 trials of 2 steps")
    args = parser.parse_args(argv)
    if args.smoke:
        args.size, args.batch, args.alphas, args.steps = "1x32", "2x16", "0.15,0.28", 2
    alphas = [float(a) for a in args.alphas.split(",")]
    with tempfile.TemporaryDirectory(prefix="inductor-") as cache:
        if not args.warm_disk:
            use_compile_cache(cache)
        compiled = [trial(make_config(args, a, "on")) for a in alphas]
    eager = [trial(make_config(args, a, "off")) for a in alphas]
    device = pick_device(make_config(args, alphas[0], "off"))
    print(f"compile reuse: {args.size} at {args.batch}, {args.steps} steps per trial, "
          f"torch {torch.__version__} on {device.type}, {torch.get_num_threads()} threads, "
          f"{'warm' if args.warm_disk else 'cold'} on-disk cache")
    print(f"{'trial':>5} {'alpha':>6} {'mode':>8} {'first s':>8} {'step ms':>8} "
          f"{'overhead s':>10} {'wall s':>7}")
    for i, (c, e) in enumerate(zip(compiled, eager), 1):
        for mode, r in (("compiled", c), ("eager", e)):
            print(f"{i:>5} {r['alpha']:>6.2f} {mode:>8} {r['first_s']:>8.2f} "
                  f"{r['steady_step_s'] * 1e3:>8.1f} {r['overhead_s']:>10.2f} "
                  f"{r['wall_s']:>7.2f}")
    fraction = compiled[1]["overhead_s"] / max(compiled[0]["overhead_s"], 1e-9)
    print(f"second trial's compile overhead: {fraction:.1%} of the first's (target <= 10%)")
    record = {"benchmark": "compile_reuse", "device": device.type,
              "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "torch": torch.__version__, "size": args.size, "batch": args.batch,
              "steps": args.steps, "smoke": args.smoke, "compiled": compiled, "eager": eager,
              "second_over_first": fraction}
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
