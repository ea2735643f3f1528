"""Where an optimiser step's time goes: torch.profiler over nGPT and GPT steps, side by side.

The training step is labelled by phase (``forward``, ``backward``, ``clip_grad``,
``optimizer``, ``project_weights``; see ``Trainer.train_step``). For each architecture this
prints the milliseconds per step of every phase and the operators with the most self time.

    python benchmarks/profile_step.py                      # 6x256, batch 8x128, CPU
    python benchmarks/profile_step.py --size 1x32 --batch 4x32 --top 15
"""

from __future__ import annotations

import argparse
import json

import torch
from throughput import device_name, make_trainer, parse_pair  # benchmarks/throughput.py
from torch.profiler import ProfilerActivity, profile

PHASES = ("forward", "backward", "clip_grad", "optimizer", "project_weights")


def profile_arch(overrides: dict, args: argparse.Namespace) -> tuple[dict, str]:
    trainer = make_trainer(parse_pair(args.size), parse_pair(args.batch), overrides, args)
    for _ in range(args.warmup):
        trainer.train_step()
    activities = [ProfilerActivity.CPU]
    if trainer.device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            trainer.train_step()
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
    events = prof.key_averages()
    by_name = {e.key: e for e in events}
    phases = {p: by_name[p].cpu_time_total / 1e3 / args.steps if p in by_name else 0.0
              for p in PHASES}
    sort = "self_cuda_time_total" if trainer.device.type == "cuda" else "self_cpu_time_total"
    table = events.table(sort_by=sort, row_limit=args.top)
    return phases, table


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="6x256", help="n_layer x n_embd")
    parser.add_argument("--batch", default="8x128", help="batch x block")
    parser.add_argument("--steps", type=int, default=7, help="profiled steps (7: one lazy "
                        "projection period)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--top", type=int, default=12, help="operators listed per model")
    parser.add_argument("--proj-every", type=int, default=1)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--compile", default="off", choices=["auto", "on", "off", "reduce-overhead"])
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    parser.add_argument("--smoke", action="store_true", help="a 1x32 model, two steps")
    args = parser.parse_args(argv)
    if args.smoke:
        args.size, args.batch, args.steps, args.warmup, args.top = "1x32", "2x32", 2, 1, 5
    record = {"benchmark": "profile_step", "size": args.size, "batch": args.batch,
              "device": device_name(args.device), "phases_ms": {}}
    for arch, overrides in (("gpt", {"model.arch": "gpt"}),
                            ("ngpt", {"model.proj_every": args.proj_every})):
        phases, table = profile_arch(overrides, args)
        record["phases_ms"][arch] = phases
        print(f"== {arch} {args.size}, batch {args.batch}: ms per step by phase")
        print("   " + "  ".join(f"{p} {ms:.2f}" for p, ms in phases.items())
              + f"  | total {sum(phases.values()):.2f}")
        print(table)
    g, n = record["phases_ms"]["gpt"], record["phases_ms"]["ngpt"]
    print("nGPT - GPT, ms per step: " + "  ".join(f"{p} {n[p] - g[p]:+.2f}" for p in PHASES))
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
