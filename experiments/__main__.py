"""The command line: ``python -m experiments {train,check,run,worker,sweep,report,bench}``."""

from __future__ import annotations

import argparse
import json
import os
import sys

# flags whose names differ from the DataConfig field they set
DATA_FLAG_NAMES = {"name": "--data", "root": "--data-root"}


def _data_flags(p) -> None:
    """One flag per field of the DataConfig schema (``--subset`` sets ``data.subset``), typed
    by the schema when parsed; ``--set data.KEY=VALUE`` does the same."""
    import dataclasses

    from experiments.run.data import DataConfig

    group = p.add_argument_group("data (fields of DataConfig; also --set data.KEY=VALUE)")
    for f in dataclasses.fields(DataConfig):
        if f.name == "extra":
            continue
        flag = DATA_FLAG_NAMES.get(f.name, "--" + f.name.replace("_", "-"))
        default = f.default if f.default is not dataclasses.MISSING else None
        group.add_argument(
            flag,
            dest=f"data.{f.name}",
            default=None,
            metavar=str(f.type).split(" ")[0].upper(),
            help=f"{f.name} ({f.type}, default {default})",
        )


def _train_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train and test one configuration, print one JSON result row",
        description="Train one model on one dataset and print its result as one JSON row.",
    )
    p.add_argument(
        "--model", required=True, help="timm model name, e.g. deit_micro or localvit_micro"
    )
    p.add_argument(
        "--set",
        dest="sets",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="overrides: a bare key is a model toggle (dwconv=false, layers=low); "
        "data.KEY / train.KEY set data and recipe fields (train.lr=1e-3, data.subset=5000)",
    )
    _data_flags(p)
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default 3)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 2e-3)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, order and augmentation")
    p.add_argument("--out", default=None, help="run directory for checkpoints (resumed if present)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def cmd_train(args) -> int:
    from experiments.config.schema import parse_sets
    from experiments.run.train import train_run

    flags = [f"{k}={v}" for k, v in vars(args).items() if k.startswith("data.") and v is not None]
    flags += [
        f"train.{k}={getattr(args, k)}" for k in ("epochs", "lr") if getattr(args, k) is not None
    ]
    try:
        sets = parse_sets(flags + list(args.sets))  # --set wins over a flag
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    data, train = sets["data"], sets["train"]
    result = train_run(
        {"name": args.model, **sets["model"]},
        data,
        train,
        seed=args.seed,
        workdir=args.out,
        progress=not args.no_progress,
    )
    result.pop("epochs")
    row = {
        "model": args.model,
        **{f"model.{k}": v for k, v in sets["model"].items()},
        "seed": args.seed,
    }
    print(json.dumps({**row, **result}, default=str))
    return 0 if result["status"] == "ok" else 1


def _run_options(p) -> None:
    """--profile, --workers and --storage: shared by ``run`` and ``campaign``."""
    p.add_argument(
        "--profile",
        default="quick",
        choices=("smoke", "pilot", "quick", "paper"),  # schema.PROFILES (kept light here)
        help="compute budget (default quick)",
    )
    p.add_argument(
        "--workers",
        type=_workers,
        default=_workers(os.environ.get("WORKERS") or "auto"),
        help="local worker processes, or auto: measure workers x threads here and take the "
        "fastest (default auto)",
    )
    p.add_argument(
        "--storage",
        default=None,
        help="Optuna storage URL or journal file (default: ABLATE_STORAGE or runs/optuna.journal)",
    )


def _grid_parsers(sub) -> None:
    p = sub.add_parser(
        "check", help="validate grid specs without training (exit 2 on the first error)"
    )
    p.add_argument("paths", nargs="+", help="spec files or folders (e.g. ablations/)")

    p = sub.add_parser("run", help="run a grid: enqueue its runs once, work them, export the table")
    p.add_argument("spec", help="a grid spec, e.g. ablations/localvit/layers.yaml")
    _run_options(p)
    p.add_argument("--seeds", type=int, default=None, help="override the spec's seeds with 0..N-1")
    p.add_argument("--results", default=None, help="results folder (default results/)")
    p.add_argument("--no-progress", action="store_true", help="hide the per-run progress bar")
    p.add_argument(
        "--claims-only",
        action="store_true",
        help="train only the cells the grid's claims compare (a claims campaign)",
    )

    p = sub.add_parser(
        "campaign",
        help="a paper's claims campaign: claim cells of every grid, then seed rounds breadth "
        "first until every claim is decided, precise or at the seed cap",
    )
    p.add_argument("paper", help="a folder of ablations/, e.g. localvit")
    _run_options(p)
    p.add_argument("--results", default=None, help="results folder (default results/)")
    p.add_argument("--no-progress", action="store_true", help="hide the per-run progress bar")

    p = sub.add_parser("worker", help="one worker: drain the studies' queues in order, then stop")
    p.add_argument(
        "--study",
        action="append",
        required=True,
        help="study name, <paper>/<table>@<profile>; repeat it to drain several in order",
    )
    p.add_argument("--storage", default=None, help="Optuna storage URL or journal file")
    p.add_argument("--results", default=None, help="results folder (default results/)")
    p.add_argument("--no-progress", action="store_true", help="hide the per-run progress bar")

    for name, helptext in (
        ("report", "execute the notebooks on results/ and write results/REPORT.md"),
        (
            "bench",
            "speed figures (Lightning vs bare loop, variant vs baseline) under results/bench/",
        ),
        ("sweep", "run an Optuna sweep spec (ablations/sweeps/<name>.yaml)"),
        ("reproduce", "retrain K committed runs of a grid and compare with the committed values"),
        ("reindex", "give committed rows the ids of their resolved configs; share twin runs"),
    ):
        p = sub.add_parser(name, help=helptext, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)

    p = sub.add_parser("list", help="list grid specs with their descriptions (for make help)")
    p.add_argument("root", nargs="?", default="ablations")


def _workers(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of workers or auto") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: at least 1 worker")
    return n


def cmd_check(args) -> int:
    from pathlib import Path

    from experiments.config.spec import find_specs, load_spec

    n = 0
    for target in args.paths:
        for path in [] if Path(target).parent.name == "sweeps" else find_specs(target):
            spec = load_spec(path)
            runs = spec.expand()
            # a spec outside ablations/ finds no shared profiles: say so before it trains
            alone = "" if spec.profile_defaults else "; no profiles.yaml above it"
            print(
                f"ok  {path}  ({len(spec.cells())} cells x {len(spec.seeds)} seeds = "
                f"{len(runs)} runs{alone})"
            )
            n += 1
    from experiments.config.sweep_spec import load_sweep

    for target in args.paths:
        root = Path(target)
        sweeps = [root] if root.parent.name == "sweeps" else sorted(root.glob("**/sweeps/*.yaml"))
        for path in sweeps:
            load_sweep(path)
            print(f"ok  {path}  (sweep)")
            n += 1
    print(f"{n} spec(s) valid")
    return 0


def cmd_run(args) -> int:
    from experiments.run.runner import run_grid

    run_grid(
        args.spec,
        profile=args.profile,
        workers=args.workers,
        storage=args.storage,
        seeds=args.seeds,
        progress=not args.no_progress,
        results_dir=args.results,
        claims_only=args.claims_only,
    )
    return 0


def cmd_campaign(args) -> int:
    from experiments.run.campaign import run_campaign

    run_campaign(
        args.paper,
        profile=args.profile,
        workers=args.workers,
        storage=args.storage,
        progress=not args.no_progress,
        results_dir=args.results,
    )
    return 0


def cmd_worker(args) -> int:
    from experiments.run.runner import work
    from experiments.run.workers import registered, set_worker_threads

    set_worker_threads()
    n = 0
    with registered():  # counted in the machine's thread share (``workers.share_threads``)
        for study in args.study:  # a campaign's grids: the next when this one has nothing left
            grid, _, profile = study.rpartition("@")
            peers = [s for s in args.study if s != study]
            n += work(grid, profile, args.storage, not args.no_progress, args.results, peers=peers)
    print(f"worker {os.getpid()}: {n} run(s), queue empty", flush=True)
    return 0


def cmd_list(args) -> int:
    from experiments.config.spec import find_specs, load_spec

    for path in find_specs(args.root):
        spec = load_spec(path, build_models=False)
        target = "ablation-" + spec.name.replace("/", "-")
        print(f"{target:38s} {spec.description}")
    return 0


FORWARDED = ("report", "bench", "sweep", "reproduce", "reindex")


def _forward(module: str):
    def run(args) -> int:
        import importlib

        return importlib.import_module(module).main(args.rest)

    return run


COMMANDS = {
    "report": _forward("experiments.analysis.report"),
    "bench": _forward("experiments.tools.bench"),
    "sweep": _forward("experiments.sweep.cli"),
    "reproduce": _forward("experiments.run.reproduce"),
    "reindex": _forward("experiments.run.reindex"),
    "train": cmd_train,
    "check": cmd_check,
    "run": cmd_run,
    "campaign": cmd_campaign,
    "worker": cmd_worker,
    "list": cmd_list,
}


def main(argv: list[str] | None = None) -> int:
    from experiments.run.allocator import keep_freed_memory

    keep_freed_memory()  # every command trains or times steps: no page faults for freed memory
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _grid_parsers(sub)
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in FORWARDED:  # these parse their own options
        args = argparse.Namespace(command=argv[0], rest=argv[1:])
    else:
        args = parser.parse_args(argv)
    from experiments.config.spec import SpecError
    from experiments.run.data import DatasetNotFound, DataSplitError
    from modules.toggles import ToggleError

    try:
        return COMMANDS[args.command](args)
    except SpecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ToggleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (DatasetNotFound, DataSplitError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
