"""Search efficiency, side by side: tokens each searcher spends to get within 1% (and 0.5%) of
the best configuration, on one problem, one trial cap, one concurrency, over several seeds.

The problem: a tiny nGPT (1 layer, width 32) on the built-in corpus, searching a continuous
``loguniform`` alpha and learning rate and a categorical lr schedule. Its reference optimum
comes from a dense sweep (every point of a 7 x 7 log-spaced grid for each schedule, trained in
full), measured once and cached in the output folder (``--out``, default
``~/.cache/ngpt-tune/search_efficiency``).

The methods, each over ``--seeds`` searcher seeds (the training seed is fixed, so every method
sees the same landscape):

- ``ngpt-tune``: the shipped searcher (PruneAwareOptunaSearch + ASHA on tokens), through the
  project's runner;
- ``candidate`` (with ``--candidate``): the shipped searcher with other TPE options, scheduler
  or searcher keys (``multivariate=true,constant_liar``, ``reduction_factor=3``,
  ``stopped_trials=pruned``, ``sampler=gp``);
- ``ray-optuna``: Ray's stock OptunaSearch + ASHA, as a user gets it: Optuna's default TPE
  (multivariate since Optuna 5), ASHA-stopped trials told COMPLETE; the same start-up trials;
- ``random``: random search + ASHA (every Ray method uses the shipped ASHA settings);
- ``optuna``: Optuna alone, no Ray: TPE with Optuna's Hyperband pruner, ``fit()`` in-process
  in ``concurrency`` threads;
- ``grid``: a 3 x 3 grid of the sweep's points per schedule, in full, in order (no seed);
- ``warm``: the shipped searcher warm-started (``searcher.warm_start``) from the ngpt-tune
  campaign of the next seed in the run (the last seed's from the first's); the source's tokens
  are not charged: it is an earlier campaign a user already has.

``--vocab compact --steps 180`` is the longer problem (4 times the horizon; the built-in corpus
in 4,096 ids, so that a step costs an eighth).

Cost: every token trained by all trials up to the moment the first trial within the target
finishes (a campaign that never reaches it is charged all its tokens and counted as missing).

    python benchmarks/search_efficiency.py                       # about 25 minutes on 2 cores
    python benchmarks/search_efficiency.py --seeds 8 --candidate reduction_factor=3
    python benchmarks/search_efficiency.py --seeds 16 --methods ngpt-tune,ray-optuna --vocab compact --steps 180
    python benchmarks/search_efficiency.py --smoke
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import threading
from pathlib import Path

import yaml
from search_problem import (  # benchmarks/search_problem.py
    ALPHA,
    BASES,
    LR,
    SCHEDULES,
    STARTUP,
    base,
    grid_points,
    reference,
    write_spec,
)
from search_scores import merge, print_table, summarise  # benchmarks/search_scores.py

from ngpt_tune.provenance import git_commit

TPE_KEYS = ("multivariate", "constant_liar", "group", "n_ei_candidates", "consider_endpoints")
RAY_METHODS = ("ngpt-tune", "candidate", "ray-optuna", "random", "warm")


class Log:
    """Every report of every trial, in the order the driver saw them: (trial, tokens trained,
    val_loss, finished). Tokens trained: ``tokens_seen`` plus the tokens of cooled-down branches
    (``scheduler.cooled_rungs``), which a campaign pays for too."""

    def __init__(self):
        self.rows: list[tuple[str, int, float, bool]] = []
        self.lock = threading.Lock()

    def __getstate__(self) -> dict:  # Tune pickles its scheduler with the experiment's state
        return {"rows": self.rows}

    def __setstate__(self, state: dict) -> None:
        self.rows, self.lock = state["rows"], threading.Lock()

    def add(self, trial: str, metrics: dict) -> None:
        with self.lock:
            tokens = int(metrics["tokens_seen"]) + int(metrics.get("branch_tokens") or 0)
            self.rows.append((trial, tokens, float(metrics["val_loss"]),
                              bool(metrics.get("finished", False))))

    def score(self, targets: dict[str, float]) -> dict:
        """Tokens spent until the first finished trial <= each target; the final best."""
        seen: dict[str, int] = {}
        spent: dict[str, float | None] = dict.fromkeys(targets)
        for trial, tokens, loss, finished in self.rows:
            seen[trial] = max(seen.get(trial, 0), tokens)
            for name, target in targets.items():
                if spent[name] is None and finished and loss <= target:
                    spent[name] = float(sum(seen.values()))
        finals = [loss for _, _, loss, finished in self.rows if finished]
        return {"tokens_to": spent, "tokens_total": float(sum(seen.values())),
                "best": min(finals) if finals else None,
                "trials": len(seen)}


class _Recording:
    """Mixed into the runner's scheduler: it also logs every result it sees, in the order the
    driver saw them (Tune hands every result to the scheduler)."""

    def on_trial_result(self, tune_controller, trial, result):
        if "val_loss" in result:
            self._log.add(trial.trial_id, result)
        return super().on_trial_result(tune_controller, trial, result)


def recording(build, log: Log):
    """``build`` (a SCHEDULERS entry), its scheduler logging into ``log``."""

    def recorded(spec, **kwargs):
        scheduler = build(spec, **kwargs)
        cls = type(scheduler)
        scheduler.__class__ = type(f"Recording{cls.__name__}", (_Recording, cls), {})
        scheduler._log = log
        return scheduler

    return recorded


def ray_campaign(method: str, root: Path, *, steps: int, cap: int, seed: int,
                 concurrency: int, candidate: dict, vocab: str = "gpt2",
                 warm_from: Path | None = None) -> Log:
    """One campaign of a Ray method; ``warm``: the shipped searcher warm-started from the
    experiment ``warm_from`` (another seed's ngpt-tune campaign, its tokens not charged)."""
    from ray.tune.search.optuna import OptunaSearch

    from ngpt_tune import schedulers as scheduling
    from ngpt_tune import search
    from ngpt_tune.experiment import write_campaign
    from ngpt_tune.request import build_spec, campaign_record
    from ngpt_tune.runner import build_tuner

    log = Log()
    name = f"{method}-{seed}"
    scheduler = candidate["scheduler"] if method == "candidate" else None
    searcher_keys = candidate.get("searcher") if method == "candidate" else None
    if method == "warm":
        searcher_keys = {"warm_start": [str(warm_from)]}
    spec = build_spec(str(write_spec(root, name, steps=steps, cap=cap, concurrency=concurrency,
                                     searcher="random" if method == "random" else "optuna",
                                     seed=seed, scheduler=scheduler,
                                     searcher_keys=searcher_keys, vocab=vocab)))
    searchers, schedulers = dict(search.SEARCHERS), dict(scheduling.SCHEDULERS)
    scheduling.SCHEDULERS["asha"] = recording(schedulers["asha"], log)
    if method == "candidate" and candidate["tpe"]:
        search.SEARCHERS["optuna"] = lambda s, **kw: search._optuna(s, tpe=candidate["tpe"], **kw)
    elif method == "ray-optuna":
        search.SEARCHERS["optuna"] = lambda s, **kw: OptunaSearch(
            space=search.OptunaSpace(s), metric=s.metric, mode=s.mode,
            sampler=search.tpe_sampler(s, multivariate=None))  # Optuna's default TPE
    try:
        build_tuner(spec, storage=str(root), name=name).fit()
        # the campaign record `run` writes, which a warm start reads
        write_campaign(root / name, campaign_record(spec, request=None, command=name,
                                                    provenance={}))
    finally:
        search.SEARCHERS.update(searchers)
        scheduling.SCHEDULERS.update(schedulers)
    return log


def warm_count(experiment: Path) -> int:
    """How many trials of the experiment's Optuna study came from its warm start."""
    import optuna

    from ngpt_tune.search import study_storage

    study = optuna.load_study(study_name=None, storage=study_storage(str(experiment)))
    return sum("warm_start" in t.user_attrs for t in study.get_trials(deepcopy=False))


def optuna_campaign(*, steps: int, cap: int, seed: int, concurrency: int,
                    vocab: str = "gpt2") -> Log:
    """Optuna on its own: TPE + Hyperband, ``fit()`` in-process, ``concurrency`` threads."""
    import optuna

    from ngpt_tune.config import Config
    from ngpt_tune.train import fit

    log = Log()
    config = Config.from_dict(base(steps, vocab))
    evals = 9

    def objective(trial: optuna.Trial) -> float:
        point = {"model.alpha": trial.suggest_float("model.alpha", *ALPHA, log=True),
                 "optim.lr": trial.suggest_float("optim.lr", *LR, log=True),
                 "optim.schedule": trial.suggest_categorical("optim.schedule", SCHEDULES)}
        step = 0

        def report(metrics, save):
            nonlocal step
            step += 1
            log.add(str(trial.number), metrics)
            trial.report(metrics["val_loss"], step)
            if not metrics["finished"] and trial.should_prune():
                raise optuna.TrialPruned()

        return float(fit(config.override(point), report=report).metrics["val_loss"])

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP),
        pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=evals,
                                              reduction_factor=3))
    study.optimize(objective, n_trials=cap, n_jobs=concurrency)
    return log


def grid_campaign(ref: dict, n: int) -> Log:
    """The grid, in full and in order: its points are dense-sweep points (no training)."""
    by_point = {(p["model.alpha"], p["optim.lr"], p["optim.schedule"]): p for p in ref["points"]}
    log = Log()
    for i, point in enumerate(grid_points(n)):
        p = by_point[(point["model.alpha"], point["optim.lr"], point["optim.schedule"])]
        log.add(str(i), {"tokens_seen": p["tokens"], "val_loss": p["val_loss"], "finished": True})
    return log


def parse_candidate(text: str) -> dict:
    """``multivariate=true,constant_liar,brackets=3`` -> TPE options (a bare name: True) and
    scheduler keys;
    ``sampler=gp``, ``stopped_trials=pruned`` -> the searcher's keys."""
    tpe, scheduler, searcher = {}, {}, {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if key in TPE_KEYS:
            tpe[key] = yaml.safe_load(value) if sep else True
        elif key in ("sampler", "stopped_trials"):
            searcher[key] = value
        elif sep:
            scheduler[key] = yaml.safe_load(value)
        else:
            raise SystemExit(f"--candidate: {item!r} is no TPE option ({', '.join(TPE_KEYS)}), "
                             "scheduler key (key=value) or searcher key")
    return {"tpe": tpe, "scheduler": scheduler, "searcher": searcher}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=45, help="steps of a full trial")
    parser.add_argument("--cap", type=int, default=18, help="trials per campaign")
    parser.add_argument("--seeds", type=int, default=5, help="searcher seeds per method")
    parser.add_argument("--seed-start", type=int, default=0, help="the first searcher seed")
    parser.add_argument("--dense", type=int, default=7, help="sweep points per log axis")
    parser.add_argument("--concurrency", type=int, default=2, help="trials at a time")
    parser.add_argument("--methods", default="ngpt-tune,ray-optuna,random,optuna,grid",
                        help="comma-separated; 'candidate' needs --candidate; 'warm' (the "
                             "shipped searcher warm-started from the next seed's ngpt-tune "
                             "campaign) needs ngpt-tune")
    parser.add_argument("--vocab", choices=sorted(BASES), default="gpt2",
                        help="gpt2: section 3's problem; compact: the built-in corpus in 4,096 "
                             "ids, for the longer problem (--steps 180)")
    parser.add_argument("--candidate", default="",
                        help="the 'candidate' method: the shipped searcher with TPE options "
                             "(e.g. multivariate,group), scheduler keys (e.g. brackets=3) or "
                             "searcher keys (sampler=gp, stopped_trials=pruned)")
    parser.add_argument("--out", type=Path, default=None,
                        help="cache of the reference sweep (default ~/.cache/ngpt-tune/...)")
    parser.add_argument("--smoke", action="store_true", help="1 seed x 2 trials of 6 steps")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="OUTPUT",
                        help="no training: pool the campaigns of earlier runs' outputs (their "
                             "last line, the JSON record) and print the table again")
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge)
    candidate = parse_candidate(args.candidate)
    methods = [m for m in args.methods.split(",") if m]
    if args.candidate and "candidate" not in methods:
        methods.insert(1, "candidate")
    if "warm" in methods and "ngpt-tune" not in methods:
        parser.error("the 'warm' method starts from ngpt-tune's campaigns: add ngpt-tune")
    if args.smoke:
        args.steps, args.cap, args.seeds, args.dense = 6, 2, 1, 2
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        out = args.out or (root / "reference" if args.smoke else
                           Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
                           / "ngpt-tune" / "search_efficiency")
        ref = reference(out, n=args.dense, steps=args.steps, workers=args.concurrency,
                        vocab=args.vocab)
        best = min(p["val_loss"] for p in ref["points"])
        targets = {"1%": best * 1.01, "0.5%": best * 1.005}
        campaigns: dict[str, list[dict]] = {m: [] for m in methods}
        if any(m in RAY_METHODS for m in methods):
            import ray

            ray.init(address="local", num_cpus=args.concurrency, include_dashboard=False,
                     log_to_driver=False)
        seeds = list(range(args.seed_start, args.seed_start + args.seeds))
        # the warm campaigns last: each starts from the next seed's ngpt-tune experiment
        order = [(s, m) for s in seeds for m in methods if m != "warm"] + \
            [(s, "warm") for s in seeds if "warm" in methods]
        for seed, method in order:
            if method in RAY_METHODS:
                source = seeds[(seeds.index(seed) + 1) % len(seeds)]
                log = ray_campaign(method, root, steps=args.steps, cap=args.cap, seed=seed,
                                   concurrency=args.concurrency, candidate=candidate,
                                   vocab=args.vocab, warm_from=root / f"ngpt-tune-{source}")
            elif method == "optuna":
                log = optuna_campaign(steps=args.steps, cap=args.cap, seed=seed,
                                      concurrency=args.concurrency, vocab=args.vocab)
            elif method == "grid":
                if seed != args.seed_start:
                    continue
                log = grid_campaign(ref, args.dense)
            else:
                parser.error(f"unknown method {method!r}")
            campaigns[method].append({"seed": seed, **log.score(targets)})
            if method == "warm":
                campaigns[method][-1]["warm_trials"] = warm_count(root / f"warm-{seed}")
            print(f"campaign {method} seed {seed}: {json.dumps(campaigns[method][-1])}",
                  file=sys.stderr, flush=True)
        if any(m in RAY_METHODS for m in methods):
            ray.shutdown()
    table = summarise(campaigns, targets)
    print(f"search_efficiency: alpha loguniform{ALPHA} x lr loguniform{LR} x schedule "
          f"{SCHEDULES}; {args.steps} steps per trial, {args.cap} trials, {args.concurrency} "
          f"at a time, {args.seeds} seeds; reference best {best:.4f} (dense sweep of "
          f"{len(ref['points'])} points), targets 1% {targets['1%']:.4f}, "
          f"0.5% {targets['0.5%']:.4f}")
    if args.candidate:
        print(f"candidate: TPE options {candidate['tpe']}, scheduler {candidate['scheduler']}, "
              f"searcher {candidate['searcher']}")
    print_table(table, targets)
    record = {"benchmark": "search_efficiency", "device": platform.processor() or "cpu",
              "date": dt.date.today().isoformat(), "commit": git_commit(), "steps": args.steps,
              "vocab": args.vocab,
              "cap": args.cap, "concurrency": args.concurrency, "seeds": args.seeds,
              "reference_best": best, "reference_points": len(ref["points"]),
              "targets": targets, "candidate": candidate, "table": table,
              "campaigns": campaigns}
    print(json.dumps(record))
    return record



if __name__ == "__main__":
    main()
