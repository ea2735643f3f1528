"""Nothing leaks between trials in a reused Ray worker (real Ray, one worker, 8 trials).

fit releases a run's memory also when Ray stops the trial by raising inside tune.report:
tests/test_train.py checks that path (every reference to the model gone). Here the trials run
to the end.
"""

from __future__ import annotations

import pytest

# One leaked trial of this model would hold ~77 MB: its (50304, 64) embedding and head (26 MB)
# and AdamW's two moments of them (52 MB). The bound on the growth from the start of trial 3 to
# the start of each later trial is less than that, for all five later trials together: glibc's
# heaps (never trimmed during a run, see train.keep_freed_memory) grow by a few 13 MB
# embedding-sized blocks, then stay flat (two Ray runs: +53 MB, flat from trial 6 on; before
# the malloc_trim in Trainer.release: +400 MB). See benchmarks/RESULTS.md, "Worker memory".
BOUND_MB = 75
TRIALS = 8
STEPS = 10  # an optimizer step allocates AdamW's moments; more steps allocate nothing new


@pytest.mark.slow
def test_resident_memory_is_flat_after_the_second_trial(ray_session, tmp_path):
    from ray import tune

    # defined here, not at module level: Ray pickles a nested function by value (the workers
    # cannot import tests/)
    def trial(tune_config: dict) -> None:
        """A real training run (fit) that reports the worker's resident memory at its start."""
        import os

        import psutil
        from ray import tune

        from ngpt_tune.config import Config
        from ngpt_tune.train import fit

        i = tune_config["i"]
        rss_start = psutil.Process().memory_info().rss / 2**20
        config = Config.from_dict({
            "model": {"n_layer": 1, "n_embd": 64, "n_head": 2, "block_size": 32,
                      "alpha": 0.05 + 0.05 * i},
            "data": {"dir": "builtin", "batch_size": 4, "val_tokens": 1024},
            "train": {"steps": STEPS, "eval_every": 5, "device": "cpu", "threads": 1, "seed": i},
        })

        def report(metrics, save):
            tune.report({**metrics, "rss_start_mb": rss_start, "pid": os.getpid()})

        fit(config, report=report)

    tuner = tune.Tuner(
        tune.with_resources(trial, {"cpu": 1}),
        param_space={"i": tune.grid_search(list(range(TRIALS)))},
        tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="memory", verbose=0),
    )
    results = tuner.fit()
    assert not results.errors
    frames = {r.config["i"]: r.metrics_dataframe for r in results}
    assert sorted(frames) == list(range(TRIALS))
    pids = {int(pid) for frame in frames.values() for pid in frame["pid"]}
    assert len(pids) == 1  # every trial ran in the same reused worker
    assert all(frame["step"].max() == STEPS for frame in frames.values())
    start = {i: float(frame["rss_start_mb"].iloc[0]) for i, frame in frames.items()}
    # start[i] is what trials 0..i-1 left behind; after the second trial it stays flat
    later = {i: mb - start[2] for i, mb in start.items() if i > 2}
    print("rss at each trial's start (MB):", {i: round(mb) for i, mb in start.items()})
    assert max(later.values()) <= BOUND_MB, later
