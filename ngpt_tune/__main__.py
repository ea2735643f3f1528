"""Command line: ``python -m ngpt_tune COMMAND ...`` (or ``ngpt-tune COMMAND``).

Each sub-command is one function below; ``COMMANDS`` maps names to them. Errors in the user's
input print one line and exit with status 2; nothing is started before the input is valid.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ngpt_tune import jobs
from ngpt_tune.config import Config
from ngpt_tune.errors import ConfigError, NgptTuneError
from ngpt_tune.experiment import has_campaign
from ngpt_tune.files import join
from ngpt_tune.request import RunRequest, build_spec


def cmd_run(args: argparse.Namespace) -> int:
    """Run a campaign spec as a Ray Tune experiment."""
    request = run_request(args)
    spec = build_spec(request)
    if args.resume_if_exists and not args.name:
        raise NgptTuneError("--resume-if-exists needs --name: the experiment to continue")
    from ngpt_tune.campaign import resume_campaign, run_campaign  # Ray: once the input is valid
    from ngpt_tune.runner import RunOptions, resolve_storage  # Ray

    options = RunOptions(storage=args.storage, name=args.name, address=args.address,
                         dashboard=args.dashboard, dashboard_host=args.dashboard_host,
                         verbose=args.verbose)
    experiment = join(resolve_storage(args.storage), args.name) if args.name else None
    if args.resume_if_exists and has_campaign(experiment):
        print(f"ngpt-tune: {experiment} exists: continuing it (as recorded: this command's "
              "spec and options are not applied)", flush=True)
        resume_campaign(experiment, options)
        return 0
    run_campaign(spec, options, request=request,
                 command=shlex.join(["python", "-m", "ngpt_tune", *args.argv]))
    return 0


def run_request(args: argparse.Namespace):
    """The :class:`ngpt_tune.request.RunRequest` of ``run`` / ``validate``'s arguments."""
    return RunRequest.from_file(args.spec, smoke=args.smoke, num_samples=args.num_samples,
                                overrides=parse_sets(args.set),
                                loggers=tuple(getattr(args, "logger", None) or ()),
                                warm_start=tuple(str(Path(e).resolve()) if "://" not in e
                                                 else e for e in args.warm_start or ()))


def cmd_resume(args: argparse.Namespace) -> int:
    """Continue a stopped or killed campaign from its experiment folder."""
    from ngpt_tune.campaign import resume_campaign  # Ray: imported only where a run starts
    from ngpt_tune.runner import RunOptions  # Ray

    if "://" not in args.experiment and not Path(args.experiment).is_dir():
        raise NgptTuneError(f"{args.experiment}: no such experiment folder")
    resume_campaign(args.experiment, RunOptions(address=args.address, verbose=args.verbose))
    return 0


def cmd_confirm(args: argparse.Namespace) -> int:
    """Re-run a finished experiment's best configurations with fresh seeds (the confirmation
    stage): the confirmed ranking, verdicts and winner."""
    from ngpt_tune.campaign import confirm_campaign  # Ray: imported only where a run starts
    from ngpt_tune.runner import RunOptions  # Ray

    if "://" not in args.experiment and not Path(args.experiment).is_dir():
        raise NgptTuneError(f"{args.experiment}: no such experiment folder")
    confirm_campaign(args.experiment, RunOptions(address=args.address, verbose=args.verbose),
                     top_k=args.top,
                     seeds=args.seeds, baseline=args.baseline,
                     command=shlex.join(["python", "-m", "ngpt_tune", *args.argv]))
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    """Send a campaign to a Ray cluster as a Ray Job (it runs there whatever happens to this
    machine); print its id, its experiment folder and the commands that follow it."""
    if (args.spec is None) == (args.resume is None):
        raise NgptTuneError("submit takes a SPEC, or --resume EXPERIMENT_DIR")
    if args.resume:
        job = jobs.resume_submission(args.resume, installed=args.installed)
    else:
        spec = build_spec(run_request(args), check_data=False)  # the cluster reads the data
        job = jobs.run_submission(Path(args.spec), spec.name, args)
    print(jobs.submit(args.address, job), flush=True)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Check a spec; print the resolved search space and the trial count. Starts nothing."""
    spec = build_spec(run_request(args))
    base = spec.base_config
    print(f"{spec.name}: {spec.description.split('. ')[0].rstrip('.')}." if spec.description
          else spec.name)
    print(f"  model   {base.model.arch} {base.model.n_layer}x{base.model.n_embd} "
          f"(n_head {base.model.n_head}, block {base.model.block_size}), "
          f"batch {base.data.batch_size}, {base.train.steps} steps, data {base.data.dir}")
    print(f"  metric  {spec.metric} ({spec.mode})")
    sampler = f", {spec.searcher.sampler}" if spec.searcher.name == "optuna" else ""
    print(f"  search  ({spec.searcher.name}{sampler}, seed {spec.searcher.seed})")
    for p in spec.params:
        print(f"    {p.key}: {p.describe()}")
    if spec.variants:
        print("  variants")
        for name, overrides in spec.variants.items():
            shown = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "(base)"
            print(f"    {name}: {shown}")
    if spec.searcher.warm_start:
        from ngpt_tune.warm_start import summary, warm_trials  # Optuna: only where asked

        warm = summary(warm_trials(spec))
        print(f"  warm start {warm['finished']} finished + {warm['stopped']} stopped early + "
              f"{warm['pruned']} pruned trials from " + ", ".join(f"{s} ({n})" for s, n in warm["by_source"].items()))
    scheduler = spec.scheduler.name
    if scheduler == "asha":
        grace, max_t = spec.asha_budgets()
        scheduler += (f" ({spec.scheduler.time_attr}: grace {grace:g}, max {max_t:g}, "
                      f"reduction {spec.scheduler.reduction_factor:g})")
    print(f"  scheduler {scheduler}")
    configs = spec.trial_count() // spec.repeats
    what = "grid points" if spec.searcher.name == "grid" else "samples"
    print(f"  trials  {spec.trial_count()} ({configs} {what} x {spec.repeats} seed(s))")
    if spec.loggers.names:
        print(f"  loggers {', '.join(spec.loggers.names)}")
    if spec.confirm is not None:
        c = spec.confirm
        baseline = "" if c.baseline is None else " + baseline " + ", ".join(
            f"{k}={v}" for k, v in c.baseline.items())
        print(f"  confirm top {c.top_k}{baseline} x {c.seeds} fresh seeds: up to "
              f"{c.trial_count()} trials, no early stopping")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train one configuration without Ray, printing the validation loss as it goes."""
    from ngpt_tune.train import fit  # torch: imported only for `train`

    config = Config.from_yaml(args.config)
    if args.set:
        try:
            config = config.override(parse_sets(args.set))
        except ConfigError as err:
            raise ConfigError(err.detail, key=err.key, source="--set") from None
    m, d = config.model, config.data
    print(f"training {m.arch} {m.n_layer}x{m.n_embd} on {d.dir} for {config.train.steps} "
          f"steps of {config.tokens_per_step} tokens", flush=True)
    checkpoint_dir = Path(args.checkpoint_dir).resolve() if args.checkpoint_dir else None

    def report(metrics: dict[str, Any], save: Callable[[Path], None] | None) -> None:
        print(f"step {metrics['step']:>6}  train {metrics['train_loss']:.4f}  "
              f"val {metrics['val_loss']:.4f}  lr {metrics['lr']:.2e}  "
              f"{metrics['tokens_per_s']:,.0f} tok/s", flush=True)
        if save is not None and checkpoint_dir is not None:
            save(checkpoint_dir)

    resume = checkpoint_dir if checkpoint_dir and (checkpoint_dir / "state.pt").exists() else None
    result = fit(config, report=report, resume_from=resume,
                 checkpoint_every=config.train.eval_every if checkpoint_dir else 0)
    if result.diverged:
        print("diverged: the loss became non-finite", file=sys.stderr)
        return 1
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    """Rank the trials of an experiment; write summary.json, Parquet tables and plots."""
    from analysis import format_ranking, write_outputs  # pandas and pyarrow: only for `analyze`

    summary_path = write_outputs(args.experiment)
    print(format_ranking(summary_path))
    print(f"\nwrote {summary_path} and the tables and plots beside it")
    return 0


def cmd_prepare_data(args: argparse.Namespace) -> int:
    """Tokenise .txt / .jsonl / .parquet files into GPT-2 token shards."""
    from ngpt_tune.prepare import prepare_data  # tokenizer and pyarrow: only for `prepare-data`

    summary = prepare_data([Path(p) for p in args.inputs], Path(args.out),
                           val_fraction=args.val_fraction, shard_tokens=args.shard_tokens,
                           overwrite=args.overwrite)
    print(summary)
    return 0


def cmd_download_fineweb(args: argparse.Namespace) -> int:
    """Fetch modded-nanogpt's pre-tokenised FineWeb10B shards from the Hugging Face hub."""
    from ngpt_tune.download import download_fineweb  # huggingface_hub: only for the download

    paths = download_fineweb(args.shards, Path(args.out))
    print(f"{len(paths)} shards in {Path(args.out).resolve()}")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "resume": cmd_resume,
    "confirm": cmd_confirm,
    "submit": cmd_submit,
    "jobs": jobs.cmd_jobs,
    "logs": jobs.cmd_logs,
    "stop": jobs.cmd_stop,
    "validate": cmd_validate,
    "train": cmd_train,
    "analyze": cmd_analyze,
    "prepare-data": cmd_prepare_data,
    "download-fineweb": cmd_download_fineweb,
}


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """``["model.alpha=0.2", "train.steps=100"]`` -> ``{"model.alpha": 0.2, ...}``."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected key=value, got {item!r}", source="--set")
        parsed = yaml.safe_load(value) if value else ""
        if isinstance(parsed, float) and not math.isfinite(parsed):
            raise ConfigError(f"must be finite, got {value}", key=key, source="--set")
        out[key.strip()] = parsed
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ngpt-tune", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def spec_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("spec", help="campaign spec (search_spaces/*.yaml)")
        p.add_argument("--smoke", action="store_true",
                       help="shrink to a CPU-sized run: tiny model, built-in corpus, <= 4 trials")
        p.add_argument("--num-samples", type=int, help="override num_samples")
        p.add_argument("--set", action="extend", nargs="+", metavar="KEY=VALUE",
                       help="override base config keys, e.g. --set optim.lr=3e-4 "
                       "train.steps=100")
        p.add_argument("--warm-start", action="append", metavar="EXPERIMENT",
                       help="start the Optuna study from this earlier experiment's finished "
                       "and pruned trials (repeatable; added to the spec's searcher.warm_start)")

    run = sub.add_parser("run", help=cmd_run.__doc__)
    spec_args(run)
    run.add_argument("--name", help="experiment name (default: SPEC_NAME-DATE-TIME)")
    run.add_argument("--storage", help="results folder or URI (default ./ngpt_results, "
                     "or $NGPT_TUNE_STORAGE)")
    run.add_argument("--address", help="an existing Ray cluster (default: $RAY_ADDRESS, "
                     "else a local Ray instance)")
    run.add_argument("--dashboard", action="store_true",
                     help="start the local Ray instance with its dashboard")
    run.add_argument("--dashboard-host", default="127.0.0.1",
                     help="interface the dashboard binds to (default 127.0.0.1; see README "
                     "before exposing it)")
    run.add_argument("--verbose", action="store_true",
                     help="Ray's trial table and logs instead of one status block")
    run.add_argument("--logger", action="append", metavar="NAME",
                     help="also log to tensorboard, mlflow or wandb (repeatable; added to the "
                     "spec's loggers:, and kept by resume)")
    run.add_argument("--resume-if-exists", action="store_true",
                     help="continue the experiment --name names if it exists (a batch job "
                     "re-submitted after its time limit), else start it")

    resume = sub.add_parser("resume", help=cmd_resume.__doc__)
    resume.add_argument("experiment", help="the experiment folder printed by `run`")
    resume.add_argument("--address", help="an existing Ray cluster")
    resume.add_argument("--verbose", action="store_true",
                        help="Ray's trial table and logs instead of one status block")

    confirm = sub.add_parser("confirm", help=cmd_confirm.__doc__)
    confirm.add_argument("experiment", help="the experiment folder printed by `run`")
    confirm.add_argument("--verbose", action="store_true",
                         help="Ray's trial table and logs instead of one status block")
    confirm.add_argument("--top", type=int, help="configurations to re-run (default: the "
                         "spec's confirm.top_k, else 3; 2 for a --smoke run)")
    confirm.add_argument("--seeds", type=int, help="fresh seeds per configuration (default: "
                         "the spec's confirm.seeds, else 3; 2 for a --smoke run)")
    confirm.add_argument("--baseline", metavar="VARIANT",
                         help="re-run this variant beside them as the baseline arm")
    confirm.add_argument("--address", help="an existing Ray cluster")

    jobs.add_parsers(sub, cmd_submit.__doc__)
    validate = sub.add_parser("validate", help=cmd_validate.__doc__)
    spec_args(validate)

    train = sub.add_parser("train", help=cmd_train.__doc__)
    train.add_argument("config", help="a config YAML with model/optim/data/train sections "
                       "(configs/tiny.yaml: a tiny nGPT on the built-in corpus)")
    train.add_argument("--set", action="extend", nargs="+", metavar="KEY=VALUE",
                       help="override keys: --set a=1 b=2")
    train.add_argument("--checkpoint-dir", help="save here at every evaluation; resume from "
                       "it when it holds a checkpoint")

    analyze = sub.add_parser("analyze", help=cmd_analyze.__doc__)
    analyze.add_argument("experiment", help="experiment folder or URI")

    prep = sub.add_parser("prepare-data", help=cmd_prepare_data.__doc__)
    prep.add_argument("inputs", nargs="+", help=".txt, .jsonl or .parquet files")
    prep.add_argument("--out", required=True, help="output folder for the shards")
    prep.add_argument("--val-fraction", type=float, default=0.01)
    prep.add_argument("--shard-tokens", type=int, default=100_000_000)
    prep.add_argument("--overwrite", action="store_true",
                      help="replace token shards already in --out")

    dl = sub.add_parser("download-fineweb", help=cmd_download_fineweb.__doc__)
    dl.add_argument("--shards", type=int, default=2, help="training shards (100M tokens each)")
    dl.add_argument("--out", required=True, help="output folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # recorded as the campaign's command
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        return COMMANDS[args.command](args)
    except NgptTuneError as err:
        print(f"ngpt-tune: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("ngpt-tune: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
