"""``python -m experiments sweep``: run an Optuna sweep spec, alone or with local workers."""

from __future__ import annotations

import argparse
import os
import sys
import time

from experiments.analysis.sweeps import REEVAL_DIR
from experiments.config import spec as specs
from experiments.config.sweep_spec import load_sweep
from experiments.run.workers import registered, set_worker_threads, start_workers
from experiments.sweep.export import export, result_path, summary
from experiments.sweep.reevaluate import reevaluate, winner_text
from experiments.sweep.study import open_study, optimize


# ----------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments sweep",
        description="Run an Optuna sweep spec: tune, prune, trade accuracy against cost.",
    )
    parser.add_argument("spec", help="a sweep spec, e.g. ablations/sweeps/localvit_lr_wd.yaml")
    parser.add_argument("--profile", choices=specs.PROFILES, help="default: the spec's profile")
    parser.add_argument("--storage", help="Optuna storage URL or journal file (as for grids)")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS") or 1))
    parser.add_argument("--trials", type=int, help="total trial budget (overrides the spec's)")
    parser.add_argument("--timeout", type=float, help="seconds per worker (overrides the spec's)")
    parser.add_argument("--results", help="results folder (default results/)")
    parser.add_argument("--progress", action="store_true", help="show each trial's progress bar")
    parser.add_argument("--check", action="store_true", help="validate the spec and stop")
    parser.add_argument(
        "--reevaluate",
        type=int,
        nargs=2,
        default=(3, 3),
        metavar=("TOP", "SEEDS"),
        help="train the TOP best trials on SEEDS seeds before naming a winner (default 3 3; "
        "0 0 skips it)",
    )
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sweep = load_sweep(args.spec)
    profile = args.profile or sweep.profile
    if args.check:
        print(
            f"ok  {args.spec}  ({len(sweep.space)} parameters, {len(sweep.metrics)} objective(s))"
        )
        return 0
    if args.worker is not None:  # a child of --workers N
        set_worker_threads()
        with registered():  # grids' workers on this machine count it in their thread share
            optimize(sweep, profile, args.storage, args.trials, args.timeout, args.worker)
        return 0
    started = time.time()
    if args.workers <= 1:
        with registered():
            study = optimize(
                sweep, profile, args.storage, args.trials, args.timeout, 0, progress=args.progress
            )
    else:
        child = [args.spec, "--profile", profile]
        for flag, value in (
            ("--storage", args.storage),
            ("--trials", args.trials),
            ("--timeout", args.timeout),
            ("--results", args.results),
        ):
            if value is not None:
                child += [flag, str(value)]
        procs = start_workers(args.workers, lambda i: ["sweep", *child, "--worker", str(i)])
        try:
            for p in procs:
                p.wait()
        except KeyboardInterrupt:
            print(
                f"\n[{sweep.name}] interrupted; rerun the same command to continue.",
                file=sys.stderr,
            )
            raise
        study = open_study(sweep, sweep.study_name(profile), args.storage)
    path = result_path(sweep.name, profile, args.results)
    export(study, path)
    print(summary(study, sweep))
    top, seeds = args.reevaluate
    if top > 0 and seeds > 1:
        again = path.parent / REEVAL_DIR / path.name
        table = reevaluate(sweep, study, sweep.resolved_base(profile), again, top, seeds)
        print(winner_text(table, sweep))
    print(f"table: {path} ({time.time() - started:.0f} s)")
    return 0
