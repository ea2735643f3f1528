"""Training throughput of nGPT vs the standard GPT, and of eager vs lazy weight projection.

For each model size and batch, these variants are built in one process and timed interleaved
(round robin over ``--repeats``, warm-up steps excluded, the median sample per variant):

    gpt          the pre-norm GPT baseline (same width, depth, RoPE, SwiGLU, untied head)
    ngpt         nGPT, weights re-projected onto the sphere after every step (the paper)
    ngpt_k7      nGPT, re-projected every 7th step (proj_every 7, the prior campaign's lazy projection)
    ngpt_noproj  nGPT, never re-projected: only there to measure the projection's share
    ngpt_s15     nGPT with the prior campaign's fixed logit scale 15 instead of the learned s_z

A sample is ``--steps`` optimiser steps (default 7, so that every k=7 sample holds exactly one
projection). Printed per size and batch: step time, tokens/s, the nGPT/GPT step-time ratio,
and the projection's share of an nGPT step measured two ways:

* in the step: the time spent inside ``project_weights`` during the timed steps (CUDA events
  on a GPU), per step (median over the samples), over the step time; "k=7 removes" is ``1 - in-step(k=7) / in-step(k=1)``;
* end to end: ``(t(k=1) - t(no projection)) / t(k=1)`` and ``(t(k=1) - t(k=7)) / (t(k=1) -
  t(no projection))``. Differences of whole steps: when the projection is a few percent of a
  step, they are within the run-to-run noise (the ``spread`` column); trust the in-step figure.

On CUDA it adds MFU and the peak memory of each variant's step. The last line is one JSON
record.

    python benchmarks/throughput.py             # CPU: 6x256 at batches 8x128 and 2x128, ~4 min
    python benchmarks/throughput.py --sizes 6x256,8x384,11x768 --batch 32x128,64x1024  # GPU
    python benchmarks/throughput.py --smoke     # seconds: checks the script, not the figures

MFU counts ``6 N + 12 L C T`` FLOPs per token (:func:`ngpt_tune.flops.flops_per_token`) with N
the parameters without the input embedding (a lookup, not a matmul: the prior campaign's 4% figure counts
the same way), over the device's dense bf16 peak (``PEAK_BF16``, or ``--peak-tflops``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import platform
import statistics
import time

import psutil
import torch

from ngpt_tune.config import Config
from ngpt_tune.flops import flops_per_token
from ngpt_tune.train import Trainer, configure_process, pick_device

NEVER = 10**9
VARIANTS = {
    "gpt": {"model.arch": "gpt"},
    "ngpt": {"model.proj_every": 1},
    "ngpt_k7": {"model.proj_every": 7},
    "ngpt_noproj": {"model.proj_every": NEVER},
    "ngpt_s15": {"model.logit_scale": 15.0},
}
# dense bf16 peak FLOP/s (NVIDIA data sheets); the first name found in the device name wins
PEAK_BF16 = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "GH200": 989e12,
             "A100": 312e12, "L40S": 362e12, "A10G": 70e12}
PRIOR_TOKENS_PER_S = 44_858  # the prior campaign's nGPT 11x768 at batch 32x128 on a GH200


def parse_pair(text: str) -> tuple[int, int]:
    a, b = text.lower().split("x")
    return int(a), int(b)


def resolve_device(wanted: str) -> torch.device:
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(wanted)


def device_name(wanted: str) -> str:
    if resolve_device(wanted).type == "cuda":
        return torch.cuda.get_device_name()
    cpu = platform.processor() or platform.machine() or "cpu"
    return (f"{cpu} {torch.backends.cpu.get_cpu_capability()} "
            f"({psutil.cpu_count(logical=False)} cores, {psutil.cpu_count()} threads)")


def make_trainer(size: tuple[int, int], batch: tuple[int, int], overrides: dict,
                 args: argparse.Namespace) -> Trainer:
    """A trainer on the built-in corpus; heads of 64 dimensions (n_head = n_embd / 64)."""
    n_layer, n_embd = size
    config = Config.from_dict({
        "model": {"n_layer": n_layer, "n_embd": n_embd, "n_head": max(1, n_embd // 64),
                  "block_size": batch[1]},
        "data": {"dir": "builtin", "batch_size": batch[0], "val_tokens": batch[0] * batch[1]},
        "train": {"steps": NEVER, "device": args.device, "compile": args.compile,
                  "threads": args.threads},
    }).override(overrides)
    device = pick_device(config)
    configure_process(config, device)
    return Trainer.create(config, device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class ProjectionClock:
    """Wraps a trainer's projection to add up the time spent in it (CUDA events on a GPU,
    so the step is not synchronised)."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.inner = getattr(trainer, "project", None) or trainer.model.project_weights
        self.cuda = trainer.device.type == "cuda"
        self.seconds, self.events = 0.0, []
        trainer.project = self

    def __call__(self) -> None:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            self.inner()
            end.record()
            self.events.append((start, end))
        else:
            start = time.perf_counter()
            self.inner()
            self.seconds += time.perf_counter() - start

    def take(self) -> float:
        """Seconds spent in the projection since the last call (call after a sync)."""
        seconds = self.seconds + sum(s.elapsed_time(e) for s, e in self.events) / 1e3
        self.seconds, self.events = 0.0, []
        return seconds


def time_steps(trainer: Trainer, steps: int) -> float:
    """Seconds per optimiser step over ``steps`` steps (synchronised at both ends)."""
    sync(trainer.device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    sync(trainer.device)
    return (time.perf_counter() - start) / steps


def resident_bytes(trainer: Trainer) -> int:
    """Parameters and optimiser state: what a trainer holds between steps."""
    tensors = list(trainer.model.parameters())
    for opt in trainer.optimizers:
        for state in opt.state.values():
            tensors += [v for v in state.values() if torch.is_tensor(v)]
    return sum(t.numel() * t.element_size() for t in tensors)


def peak_flops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def bench(size: tuple[int, int], batch: tuple[int, int], args: argparse.Namespace) -> dict:
    """Every variant at one size and batch: rows and the side-by-side ratios."""
    trainers = {name: make_trainer(size, batch, VARIANTS[name], args) for name in args.variants}
    clocks = {name: ProjectionClock(t) for name, t in trainers.items() if t.model.normalized}
    device = next(iter(trainers.values())).device
    peak_mem: dict[str, float] = {}
    for name, trainer in trainers.items():  # warm-up: allocator, compile, caches
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            at_rest = torch.cuda.memory_allocated()
        time_steps(trainer, args.warmup)
        if device.type == "cuda":
            step_peak = torch.cuda.max_memory_allocated() - at_rest
            peak_mem[name] = (step_peak + resident_bytes(trainer)) / 2**30
        if name in clocks:
            clocks[name].take()
    samples: dict[str, list[float]] = {name: [] for name in trainers}
    proj_samples: dict[str, list[float]] = {name: [] for name in clocks}
    for _ in range(args.repeats):
        for name, trainer in trainers.items():  # interleaved: drift hits every variant alike
            samples[name].append(time_steps(trainer, args.steps))
            if name in clocks:
                proj_samples[name].append(clocks[name].take() / args.steps)
    in_proj = {name: statistics.median(v) for name, v in proj_samples.items()}
    tokens = batch[0] * batch[1]
    peak = peak_flops(device, args.peak_tflops)
    rows = []
    for name, trainer in trainers.items():
        step = statistics.median(samples[name])
        n_params = trainer.model.num_params()
        row = {"variant": name, "step_ms": step * 1e3, "tokens_per_s": tokens / step,
               "spread_ms": (max(samples[name]) - min(samples[name])) * 1e3,
               "n_params": n_params}
        if name in in_proj:
            row["projection_ms_per_step"] = in_proj[name] * 1e3
        if peak:
            matmul_params = n_params - trainer.config.model.vocab_size * size[1]  # minus wte
            per_token = flops_per_token(trainer.config.model, matmul_params)
            row["mfu"] = per_token * tokens / step / peak
        if name in peak_mem:
            row["peak_mem_gib"] = peak_mem[name]
        rows.append(row)
    out = {"size": f"{size[0]}x{size[1]}", "batch": f"{batch[0]}x{batch[1]}", "rows": rows,
           **ratios(rows)}
    del trainers, clocks
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def ratios(rows: list[dict]) -> dict:
    t = {r["variant"]: r["step_ms"] for r in rows}
    proj = {r["variant"]: r["projection_ms_per_step"] for r in rows
            if "projection_ms_per_step" in r}
    out: dict = {}
    if "gpt" in t:
        out.update({f"{n}_over_gpt": t[n] / t["gpt"] for n in t if n != "gpt"})
    if "ngpt" in proj:
        out["projection_share"] = proj["ngpt"] / t["ngpt"]
        if "ngpt_k7" in proj and proj["ngpt"] > 0:
            out["k7_removes_of_projection"] = 1 - proj["ngpt_k7"] / proj["ngpt"]
    if {"ngpt", "ngpt_noproj"} <= set(t):
        cost = t["ngpt"] - t["ngpt_noproj"]
        out["projection_share_end_to_end"] = cost / t["ngpt"]
        if "ngpt_k7" in t and cost > 0:
            out["k7_removes_end_to_end"] = (t["ngpt"] - t["ngpt_k7"]) / cost
    return out


def print_result(res: dict, cuda: bool) -> None:
    rows = res["rows"]
    mfu, mem = "mfu" in rows[0], "peak_mem_gib" in rows[0]
    print(f"\n{res['size']} at batch {res['batch']}")
    print(f"  {'variant':>12} {'step ms':>9} {'spread':>7} {'tokens/s':>10} {'proj ms':>8}"
          + (f" {'MFU':>6}" if mfu else "") + (f" {'peak GiB':>8}" if mem else ""))
    for r in rows:
        proj = f"{r['projection_ms_per_step']:8.2f}" if "projection_ms_per_step" in r else " " * 8
        print(f"  {r['variant']:>12} {r['step_ms']:9.1f} {r['spread_ms']:7.1f} "
              f"{r['tokens_per_s']:10,.0f} {proj}" + (f" {r['mfu']:6.1%}" if mfu else "")
              + (f" {r['peak_mem_gib']:8.2f}" if mem else ""))
    noisy = [r["variant"] for r in rows if r["spread_ms"] > 0.2 * r["step_ms"]]
    if noisy:
        print(f"  NOISY: samples of {', '.join(noisy)} spread over > 20% of their median; "
              "something else is using this machine's cores or memory bandwidth: run again")
    if "ngpt_over_gpt" in res:
        print(f"  nGPT / GPT step time: {res['ngpt_over_gpt']:.3f} (target <= 1.15)"
              + (f"; k=7: {res['ngpt_k7_over_gpt']:.3f}" if "ngpt_k7_over_gpt" in res else "")
              + (f"; fixed logit scale: {res['ngpt_s15_over_gpt']:.3f}"
                 if "ngpt_s15_over_gpt" in res else ""))
    if "projection_share" in res:
        line = f"  projection share of an nGPT step: {res['projection_share']:.1%} in the step"
        if "projection_share_end_to_end" in res:
            line += f", {res['projection_share_end_to_end']:.1%} end to end"
        print(line)
    if "k7_removes_of_projection" in res:
        line = (f"  proj_every 7 removes {res['k7_removes_of_projection']:.0%} of it in the step"
                " (target >= 80%; 6/7 = 86%)")
        if "k7_removes_end_to_end" in res:
            line += f", {res['k7_removes_end_to_end']:.0%} end to end"
        print(line)
    if cuda and res["size"] == "11x768" and res["batch"] == "32x128":
        ngpt = next((r for r in rows if r["variant"] == "ngpt"), None)
        if ngpt:
            print(f"  vs the prior campaign's {PRIOR_TOKENS_PER_S:,} tokens/s: "
                  f"{ngpt['tokens_per_s'] / PRIOR_TOKENS_PER_S:.1f}x (target >= 4x)")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", help="n_layer x n_embd, comma-separated (default: 6x256 "
                        "on CPU; 6x256,8x384,11x768 on CUDA)")
    parser.add_argument("--batch", "--batches", dest="batches", help="batch x block, "
                        "comma-separated (default: 8x128,2x128 on CPU; 32x128 (the prior campaign's) "
                        "and 64x1024 on CUDA)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated subset of {', '.join(VARIANTS)}")
    parser.add_argument("--steps", type=int, default=7, help="timed steps per sample")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant")
    parser.add_argument("--repeats", type=int, default=5, help="samples per variant")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--compile", default="auto",
                        choices=["auto", "on", "off", "reduce-overhead"],
                        help="train.compile (auto: on for CUDA; reduce-overhead: CUDA graphs)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak")
    parser.add_argument("--smoke", action="store_true",
                        help="a 1x64 model at batch 2x32, one sample: checks, not figures")
    args = parser.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    cuda = resolve_device(args.device).type == "cuda"
    if args.smoke:
        args.sizes, args.batches = "1x64", "2x32"
        args.steps, args.warmup, args.repeats = 7, 1, 1
        if args.compile == "auto":
            args.compile = "off"
    sizes = [parse_pair(s) for s in (args.sizes or ("6x256,8x384,11x768" if cuda else "6x256"))
             .split(",")]
    batches = [parse_pair(b) for b in (args.batches or ("32x128,64x1024" if cuda
                                                        else "8x128,2x128")).split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    name = device_name(args.device)
    print(f"throughput on {name}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"compile {args.compile}; median of {args.repeats} samples of {args.steps} steps "
          f"after {args.warmup} warm-up steps, variants interleaved")
    record = {"benchmark": "throughput", "device": name,
              "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "compile": args.compile, "steps": args.steps, "repeats": args.repeats,
              "warmup": args.warmup, "smoke": args.smoke, "sizes": []}
    for size in sizes:
        for batch in batches:
            res = bench(size, batch, args)
            print_result(res, cuda)
            record["sizes"].append(res)
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
