"""Retrain committed runs and say how far the new numbers are from the committed ones.

    python -m experiments reproduce ablations/localvit/layers.yaml --runs 3

What to expect: on the machine and thread count that produced a row, the retrained run is
bit-identical (difference 0). On another CPU (another instruction set, e.g. AVX2 vs
AVX-512) or thread count, or under code that computes a layer with another kernel (a row's
``git_sha`` names its code: CAS-ViT and MBConv rows trained before ``MapGELU`` used PyTorch's
own GELU kernel, LocalViT and DeiT rows before ``class_token_attention`` computed their last
block on every token), the kernels round differently, the runs diverge after a few steps,
and the difference is of the size of the seed-to-seed spread of the cell: reproducible in
distribution, not bit for bit. Each retrained run is reported with its difference to the
committed value and whether it lies within two standard deviations of the cell's seeds.
Each run is retrained at its row's thread count (a reduction split over other threads rounds
otherwise). The figures go to ``results/reproduce/<paper>-<table>.csv``.

    python -m experiments reproduce ablations/casvit/local.yaml --resumed

retrains, without a break, the runs that were killed and resumed from a checkpoint: on the
machine that trained them each must be bit-identical to its row, or a result would depend on
where a run was killed (``results/reproduce/<paper>-<table>.resumed.csv``; a run checked
there before, whose committed number has not changed, is kept and not retrained, so the checks
of a table that grows over sessions add up).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.config.spec import DEFAULT_PROFILE, load_spec
from experiments.run import store
from experiments.run.resume import run_threads
from experiments.run.runner import run_records


def pick(table: pd.DataFrame, runs: int, seed: int) -> pd.DataFrame:
    """``runs`` ok rows, spread over the cells (one per cell first), chosen with ``seed``."""
    ok = table[table["status"] == "ok"].sample(frac=1.0, random_state=seed)
    ok = ok.assign(_rank=ok.groupby("cell").cumcount()).sort_values("_rank", kind="stable")
    return ok.head(runs).drop(columns="_rank")


def resumed(table: pd.DataFrame) -> pd.DataFrame:
    """The ok rows of runs that were interrupted and resumed from a checkpoint: retrained
    without a break, each must come out bit-identical (a result must not depend on a kill)."""
    if "restart_epoch" not in table:
        return table.iloc[:0]
    restarted = pd.to_numeric(table["restart_epoch"], errors="coerce").fillna(0) > 0
    return table[(table["status"] == "ok") & restarted]


def reproduce(
    spec_path: str,
    runs: int | None,
    profile: str = DEFAULT_PROFILE,
    seed: int = 0,
    results_dir: str | None = None,
    only_resumed: bool = False,
):

    from experiments.run.train import train_run

    spec = load_spec(spec_path)
    table_path, _ = store.result_paths(spec.name, profile, results_dir)
    if not table_path.exists():
        raise SystemExit(f"{table_path}: no committed results to reproduce")
    table = store.read_table(table_path)
    records = {r["run_id"]: r for r in run_records(spec, profile, sorted(set(table["seed"])))}
    here = store.provenance()
    rows = []
    name = f"{spec.paper}-{spec.table}{'.resumed' if only_resumed else ''}.csv"
    path = store.results_root(results_dir) / "reproduce" / name
    checked = pd.DataFrame()
    if only_resumed:
        chosen, checked = _not_checked_yet(resumed(table), path)
        chosen = chosen if runs is None else chosen.head(runs)
    else:
        chosen = pick(table, 3 if runs is None else runs, seed)
    if chosen.empty:
        print(f"{table_path}: no {'resumed ' if only_resumed else ''}ok runs to retrain")
    for row in chosen.to_dict("records"):
        run = records.get(row["run_id"])
        if run is None:
            print(f"run {row['run_id']} ({row['cell']}) is no longer in the grid; skipped")
            continue
        cfg = run["config"]
        threads = pd.to_numeric(pd.Series([row.get("threads")]), errors="coerce").iloc[0]
        fits = pd.notna(threads) and int(threads) <= (os.cpu_count() or 1)
        # the row's thread count: the same reductions
        with tempfile.TemporaryDirectory() as tmp, run_threads(int(threads) if fits else None):
            result = train_run(
                cfg["model"],
                cfg["data"],
                cfg["train"],
                seed=run["seed"],
                workdir=Path(tmp),
                progress=False,
                measure_cost=False,
            )
        cell = table[(table["cell"] == row["cell"]) & (table["status"] == "ok")]["test_top1"]
        sd = float(cell.std(ddof=1)) if len(cell) > 1 else float("nan")
        diff = result.get("test_top1", float("nan")) - row["test_top1"]
        same_machine = row.get("cpu_model") == here["cpu_model"] and row.get(
            "threads"
        ) == result.get("threads")
        rows.append(
            {
                "run_id": row["run_id"],
                "cell": row["cell"],
                "seed": row["seed"],
                "committed_top1": row["test_top1"],
                "retrained_top1": result.get("test_top1"),
                "difference": diff,
                "cell_seed_sd": sd,
                "within_2sd": bool(abs(diff) <= 2 * sd) if np.isfinite(sd) else None,
                "bit_identical": diff == 0,
                "committed_on": f"{row.get('cpu_model', '?')} / {row.get('cpu_capability', '?')}"
                f" / {row.get('threads', '?')} threads",
                "retrained_on": f"{here['cpu_model']} / {here['cpu_capability']}"
                f" / {result.get('threads', '?')} threads",
                "same_machine_and_threads": same_machine,
            }
        )
        r = rows[-1]
        print(
            f"{r['cell']:32s} seed {r['seed']}: committed {r['committed_top1']:.2f}, "
            f"retrained {r['retrained_top1']:.2f}, diff {diff:+.2f} pp "
            f"(cell sd {sd:.2f}; {'within' if r['within_2sd'] else 'outside'} 2 sd)",
            flush=True,
        )
    out = pd.DataFrame(rows)
    if len(checked):  # the resumed runs checked before, whose rows have not changed since
        kept = checked[~checked["run_id"].isin(out.get("run_id", []))]
        store.atomic_write_csv(pd.concat([kept, out], ignore_index=True), path)
    else:
        store.atomic_write_csv(out, path)
    print(f"wrote {path}")
    return out


def _not_checked_yet(rows: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the resumed rows to retrain, the earlier checks to keep): a row checked before with the
    same committed number is not retrained again, so the checks of a growing table add up."""
    if not path.exists():
        return rows, pd.DataFrame()
    checked = pd.read_csv(path, dtype={"run_id": str})
    before = dict(zip(checked["run_id"], checked["committed_top1"], strict=True))
    same = [before.get(r) == v for r, v in zip(rows["run_id"], rows["test_top1"], strict=True)]
    return rows[~pd.Series(same, index=rows.index, dtype=bool)], checked


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m experiments reproduce",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spec", help="a grid spec whose committed table to check")
    p.add_argument(
        "--runs",
        type=int,
        default=None,
        help="how many committed runs to retrain (default 3; with --resumed, every resumed run "
        "not checked yet)",
    )
    p.add_argument("--profile", default=DEFAULT_PROFILE)
    p.add_argument("--seed", type=int, default=0, help="which runs are picked")
    p.add_argument("--results", default=None, help="results folder (default results/)")
    p.add_argument(
        "--resumed",
        action="store_true",
        help="retrain the runs that were killed and resumed, without a break; runs checked "
        "before (results/reproduce/<paper>-<table>.resumed.csv, same committed number) are kept",
    )
    args = p.parse_args(argv)
    reproduce(args.spec, args.runs, args.profile, args.seed, args.results, args.resumed)
    return 0
