"""What Ray Tune costs: N equal trials through Tune vs the same trials called directly.

The trials are the same tiny nGPT training (built-in corpus, one CPU thread each), differing
only in seed, with a step count calibrated to last ``--seconds``. They run four ways:

    direct, sequential      ngpt_tune.train.fit in a loop
    Tune, concurrency 1     the real trainable and Tuner (grid over seeds, FIFO)
    direct, concurrency C   a process pool of C workers
    Tune, concurrency C     the same Tuner with C trials at once

Overhead = (Tune wall - direct wall) / Tune wall, at equal concurrency. The Tune trials report
at the same evaluations as the direct ones and checkpoint only their final state (the direct
runs save nothing; a campaign's default checkpoints at every evaluation). Starting Ray
(``ray.init``) is timed apart: it is paid once per campaign, not per trial.

Where the time goes: during every run the CPU seconds of this process tree are sampled with
psutil and split into the trials (pool workers, Ray's trial actors), Ray's services
(GCS, raylet, agents, log monitor) and the driver (this process: Tune's event loop). With as
many trials as cores, whatever Ray's services and the driver use is taken from the trials.

    python benchmarks/tune_overhead.py                  # 4 trials of ~30 s, concurrency 2
    python benchmarks/tune_overhead.py --smoke
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import psutil

from ngpt_tune.config import nest_dotted
from ngpt_tune.presets import gpt2_vocabulary, preset

BASE = nest_dotted(gpt2_vocabulary(preset("tiny", {"data.val_tokens": 512, "train.device": "cpu",
                                                   "train.threads": 1})))


def config_dict(steps: int, seed: int) -> dict:
    return {**BASE, "train": {**BASE["train"], "steps": steps, "eval_every": max(1, steps // 5),
                              "seed": seed}}


def train_direct(raw: dict) -> float:
    from ngpt_tune.config import Config
    from ngpt_tune.train import fit

    return fit(Config.from_dict(raw)).metrics["val_loss"]


def calibrate(seconds: float) -> int:
    """Steps that take about ``seconds`` at one thread."""
    import torch

    from ngpt_tune.config import Config
    from ngpt_tune.train import Trainer

    torch.set_num_threads(1)
    config = Config.from_dict(config_dict(10**9, 0))
    trainer = Trainer.create(config, torch.device("cpu"))
    for _ in range(5):
        trainer.train_step()
    start = time.perf_counter()
    for _ in range(20):
        trainer.train_step()
    per_step = (time.perf_counter() - start) / 20
    return max(10, int(seconds / per_step))


class CpuMeter:
    """CPU seconds used by this process and its descendants while in the ``with`` block, by
    group: ``trials``, ``ray`` (Ray's services) and ``driver``. Samples (psutil) every 0.25 s
    so that processes that exit during the block still count (up to their last sample)."""

    RAY_SERVICES = ("gcs_server", "raylet", "dashboard", "log_monitor", "monitor.py",
                    "ray::DashboardAgent", "ray::RuntimeEnvAgent", "runtime_env")

    def __init__(self, *, driver_trains: bool = False):
        self.driver_trains = driver_trains  # the trials run in this process (direct, in a loop)
        self.root = os.getpid()
        self.start: dict[int, float] = {}
        self.last: dict[int, tuple[str, float]] = {}
        self.stop = threading.Event()

    def _sample(self) -> dict[int, tuple[str, float]]:
        """pid -> (group, CPU seconds) of this process and its descendants."""
        root = psutil.Process(self.root)
        out = {}
        for proc in [root, *root.children(recursive=True)]:
            try:
                with proc.oneshot():
                    cmd = " ".join(proc.cmdline())
                    times = proc.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            out[proc.pid] = (self._group(proc.pid, cmd), times.user + times.system)
        return out

    def _group(self, pid: int, cmd: str) -> str:
        if pid == self.root:
            return "trials" if self.driver_trains else "driver"
        if any(s in cmd for s in self.RAY_SERVICES):
            return "ray"
        return "trials"  # pool workers, ray::ImplicitFunc / ray::IDLE actors

    def _loop(self) -> None:
        while not self.stop.wait(0.25):
            self.last.update(self._sample())

    def __enter__(self) -> CpuMeter:
        self.start = {pid: cpu for pid, (_, cpu) in self._sample().items()}
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.last.update(self._sample())

    def seconds(self) -> dict[str, float]:
        out = {"trials": 0.0, "ray": 0.0, "driver": 0.0}
        for pid, (group, cpu) in self.last.items():
            out[group] += cpu - self.start.get(pid, 0.0)
        return out


def tune_wall(steps: int, trials: int, concurrency: int, storage: Path) -> float:
    import yaml

    from ngpt_tune.request import build_spec
    from ngpt_tune.runner import build_tuner

    spec_path = storage / f"spec_c{concurrency}.yaml"
    spec_path.write_text(yaml.safe_dump({
        "name": f"overhead_c{concurrency}",
        "base": config_dict(steps, 0),
        "search": {"train.seed": {"grid": list(range(trials))}},
        "searcher": "grid", "scheduler": "fifo",
        "max_concurrent_trials": concurrency,
        "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0},
        # the direct runs save nothing: Tune checkpoints only the final state here
        "checkpoint": {"every": steps, "keep": 1},
    }))
    spec = build_spec(str(spec_path))
    tuner = build_tuner(spec, storage=str(storage), name=f"c{concurrency}")
    start = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - start
    assert not results.errors, results.errors
    return wall


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of one trial")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="2 trials of ~1 s")
    args = parser.parse_args(argv)
    if args.smoke:
        args.trials, args.seconds = 2, 1.0
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    steps = calibrate(args.seconds)
    configs = [config_dict(steps, seed) for seed in range(args.trials)]
    print(f"tune_overhead: {args.trials} trials of {steps} steps (~{args.seconds:.0f} s each), "
          f"concurrency {args.concurrency}, on {platform.processor() or 'cpu'} "
          f"({os.cpu_count()} cores)")

    cpu: dict[str, dict[str, float]] = {}
    with CpuMeter(driver_trains=True) as meter:
        start = time.perf_counter()
        for raw in configs:
            train_direct(raw)
        direct_seq = time.perf_counter() - start
    cpu["sequential_direct"] = meter.seconds()

    with CpuMeter() as meter:
        start = time.perf_counter()
        with cf.ProcessPoolExecutor(args.concurrency) as pool:
            list(pool.map(train_direct, configs))
        direct_pool = time.perf_counter() - start
    cpu["concurrency_direct"] = meter.seconds()

    import ray

    start = time.perf_counter()
    ray.init(address="local", num_cpus=args.concurrency, include_dashboard=False,
             log_to_driver=False)
    ray_init = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        with CpuMeter() as meter:
            tune_seq = tune_wall(steps, args.trials, 1, Path(folder))
        cpu["sequential_tune"] = meter.seconds()
        with CpuMeter() as meter:
            tune_conc = tune_wall(steps, args.trials, args.concurrency, Path(folder))
        cpu["concurrency_tune"] = meter.seconds()
    ray.shutdown()

    rows = [
        ("sequential", direct_seq, tune_seq),
        (f"concurrency {args.concurrency}", direct_pool, tune_conc),
    ]
    print(f"{'':>16} {'direct s':>9} {'Tune s':>9} {'overhead':>9}")
    record = {"benchmark": "tune_overhead", "device": platform.processor() or "cpu",
              "date": dt.date.today().isoformat(), "trials": args.trials,
              "trial_seconds": args.seconds, "steps": steps, "ray_init_s": ray_init}
    for name, direct, tune in rows:
        overhead = (tune - direct) / tune
        print(f"{name:>16} {direct:9.1f} {tune:9.1f} {overhead:9.1%}")
        key = name.split()[0]
        record.update({f"{key}_direct_s": direct, f"{key}_tune_s": tune,
                       f"{key}_overhead": overhead})
    print(f"(starting Ray took {ray_init:.1f} s, once per campaign)")
    print(f"\nCPU seconds during each run ({os.cpu_count()} cores):")
    print(f"{'':>22} {'wall s':>7} {'trials':>7} {'Ray':>6} {'driver':>7} {'Ray+driver':>11}")
    walls = {"sequential_direct": direct_seq, "concurrency_direct": direct_pool,
             "sequential_tune": tune_seq, "concurrency_tune": tune_conc}
    for run, used in cpu.items():
        extra = used["ray"] + used["driver"]
        print(f"{run.replace('_', ' '):>22} {walls[run]:7.1f} {used['trials']:7.1f} "
              f"{used['ray']:6.1f} {used['driver']:7.1f} {extra:6.1f} "
              f"({extra / (walls[run] * (os.cpu_count() or 1)):.0%})")
    record["cpu_seconds"] = cpu
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
