"""Training throughput of nGPT vs the standard GPT, and of eager vs lazy weight projection.

For each model size, four variants are built and timed interleaved in one process (round
robin over repeats, warm-up steps excluded, median per variant):

    gpt        the pre-norm GPT baseline
    ngpt       nGPT, weights re-projected after every step (the paper)
    ngpt_k7    nGPT, re-projected every 7 steps (the seeds' lazy projection)
    ngpt_noproj nGPT, never re-projected (only to measure the projection's share)
    ngpt_s15   nGPT with the seeds' fixed logit scale 15 instead of the learned s_z

Printed: step time, tokens/s, nGPT/GPT step-time ratio, the projection's share of an nGPT step
and the fraction of it that k=7 removes; on CUDA also MFU and peak memory. The last line is
one JSON record.

    python benchmarks/throughput.py                       # CPU default: 6x256, batch 8x128
    python benchmarks/throughput.py --sizes 6x256,8x384,11x768 --batch 32x128   # on a GPU
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import platform
import statistics
import time

import torch

from ngpt_tune.config import Config
from ngpt_tune.flops import flops_per_token
from ngpt_tune.train import Trainer

NEVER = 10**9
VARIANTS = {
    "gpt": {"model.arch": "gpt"},
    "ngpt": {"model.proj_every": 1},
    "ngpt_k7": {"model.proj_every": 7},
    "ngpt_noproj": {"model.proj_every": NEVER},
    "ngpt_s15": {"model.logit_scale": 15.0},  # the seeds' fixed logit scale: no s_z to learn
}
# dense bf16 peak FLOP/s by device name (NVIDIA data sheets, SXM parts)
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "GH200": 989e12, "A100": 312e12}


def parse_pair(text: str) -> tuple[int, int]:
    a, b = text.lower().split("x")
    return int(a), int(b)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_trainer(size: tuple[int, int], batch: tuple[int, int], overrides: dict,
                 args: argparse.Namespace) -> Trainer:
    n_layer, n_embd = size
    config = Config.from_dict({
        "model": {"n_layer": n_layer, "n_embd": n_embd, "n_head": 8 if n_embd % 6 else 6,
                  "block_size": batch[1]},
        "data": {"dir": "builtin", "batch_size": batch[0], "val_tokens": batch[0] * batch[1]},
        "train": {"steps": NEVER, "device": args.device, "compile": args.compile,
                  "threads": args.threads},
    }).override(overrides)
    return Trainer.create(config)


def time_steps(trainer: Trainer, steps: int) -> float:
    """Seconds per optimiser step over ``steps`` steps (synchronised at both ends)."""
    sync(trainer.device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    sync(trainer.device)
    return (time.perf_counter() - start) / steps


def peak_flops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def bench_size(size, batch, args) -> list[dict]:
    trainers = {name: make_trainer(size, batch, o, args) for name, o in VARIANTS.items()}
    device = next(iter(trainers.values())).device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for trainer in trainers.values():  # warm-up: allocator, compile, caches
        time_steps(trainer, args.warmup)
    samples: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(args.repeats):
        for name, trainer in trainers.items():  # interleaved: drift hits every variant
            samples[name].append(time_steps(trainer, args.steps))
    tokens = batch[0] * batch[1]
    peak = peak_flops(device, args.peak_tflops)
    rows = []
    for name, trainer in trainers.items():
        step = statistics.median(samples[name])
        n_params = trainer.model.num_params()
        row = {"size": f"{size[0]}x{size[1]}", "batch": f"{batch[0]}x{batch[1]}",
               "variant": name, "step_ms": step * 1e3, "tokens_per_s": tokens / step,
               "n_params": n_params}
        if peak:
            row["mfu"] = flops_per_token(trainer.config.model, n_params) * tokens / step / peak
        rows.append(row)
    if device.type == "cuda":
        for row in rows:
            row["peak_mem_gib_all_variants"] = torch.cuda.max_memory_allocated() / 2**30
    del trainers
    gc.collect()
    return rows


def ratios(rows: list[dict]) -> dict:
    t = {r["variant"]: r["step_ms"] for r in rows}
    share = (t["ngpt"] - t["ngpt_noproj"]) / t["ngpt"]
    removed = (t["ngpt"] - t["ngpt_k7"]) / max(t["ngpt"] - t["ngpt_noproj"], 1e-12)
    return {"ngpt_over_gpt": t["ngpt"] / t["gpt"], "ngpt_k7_over_gpt": t["ngpt_k7"] / t["gpt"],
            "ngpt_s15_over_gpt": t["ngpt_s15"] / t["gpt"],
            "projection_share": share, "k7_removes_of_projection": removed}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=None, help="n_layer x n_embd, comma-separated "
                        "(default: 6x256 on CPU, 6x256,8x384,11x768 on CUDA)")
    parser.add_argument("--batch", default=None, help="batch x block (default: 8x128 on CPU, "
                        "32x128 on CUDA)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per sample")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--compile", default="auto", choices=["auto", "on", "off"])
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak")
    parser.add_argument("--smoke", action="store_true", help="a 1x32 model, a few steps")
    args = parser.parse_args(argv)
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    if args.smoke:
        args.sizes, args.batch, args.steps, args.warmup, args.repeats = "1x32", "2x32", 2, 1, 1
    sizes = [parse_pair(s) for s in (args.sizes or ("6x256,8x384,11x768" if cuda else "6x256"))
             .split(",")]
    batch = parse_pair(args.batch or ("32x128" if cuda else "8x128"))
    device_name = torch.cuda.get_device_name() if cuda else platform.processor() or "cpu"
    print(f"throughput on {device_name}, torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}, batch {batch[0]}x{batch[1]}, median of {args.repeats} "
          f"x {args.steps} steps after {args.warmup} warm-up steps")
    record = {"benchmark": "throughput", "device": device_name,
              "date": dt.date.today().isoformat(), "torch": torch.__version__, "sizes": []}
    header = f"{'size':>7} {'variant':>12} {'step ms':>9} {'tokens/s':>10}"
    for size in sizes:
        rows = bench_size(size, batch, args)
        print(header + (f" {'MFU':>6}" if "mfu" in rows[0] else ""))
        for r in rows:
            mfu = f" {r['mfu']:6.1%}" if "mfu" in r else ""
            print(f"{r['size']:>7} {r['variant']:>12} {r['step_ms']:9.1f} "
                  f"{r['tokens_per_s']:10,.0f}{mfu}")
        rat = ratios(rows)
        print(f"  nGPT/GPT step time {rat['ngpt_over_gpt']:.3f} (k=7: "
              f"{rat['ngpt_k7_over_gpt']:.3f}, fixed logit scale: {rat['ngpt_s15_over_gpt']:.3f}); "
              f"projection share of an nGPT step "
              f"{rat['projection_share']:.1%}; k=7 removes {rat['k7_removes_of_projection']:.0%}"
              " of it")
        record["sizes"].append({"rows": rows, **rat})
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
