"""Give every committed row the run id of its resolved configuration, and share twins.

    python -m experiments reindex [ablations/] [--results results/] [--dry-run]

Run ids hash the fully resolved configuration (``experiments.run.identity``). Tables written
before that, or before a grid was rewritten, carry other ids. For each grid spec this takes
the committed table, matches every row to the run of the current spec with the same cell and
seed, and gives it that run's id. Rows of different grids that now share an id are one run:
the first one trained (earliest ``date``) is kept, and every other row becomes a copy of it
(metrics, cost and provenance) that names its grid in ``shared_from``, with its curve. Rows
whose cell is no longer in the spec keep their id. Prints how many rows were deduplicated.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from experiments.config.spec import PROFILES, find_specs, load_spec
from experiments.run import store
from experiments.run.runner import run_records

KEEP = set(store.ID_COLUMNS)


def reindex(ablations: Path, results_dir: Path | None = None, dry_run: bool = False) -> dict:
    tables: dict[Path, pd.DataFrame] = {}
    curves: dict[Path, pd.DataFrame] = {}
    for spec_path in find_specs(ablations):
        spec = load_spec(spec_path, build_models=False)
        for profile in PROFILES:
            table_path, curve_path = store.result_paths(spec.name, profile, results_dir)
            if not table_path.exists():
                continue
            df = store.read_table(table_path)
            ep = pd.read_csv(curve_path, dtype={"run_id": str}) if curve_path.exists() else None
            records = run_records(spec, profile, sorted(int(s) for s in set(df["seed"])))
            new_id = {(r["cell"], r["seed"]): r["run_id"] for r in records}
            old_to_new = {}
            for i, row in df.iterrows():
                rid = new_id.get((row["cell"], int(row["seed"])))
                if rid is not None:
                    old_to_new[row["run_id"]] = rid
                    df.at[i, "run_id"] = rid
            if ep is not None:
                ep["run_id"] = ep["run_id"].replace(old_to_new)
            tables[table_path], curves[table_path] = df, ep

    # one origin per run id: the finished row trained first
    rows = []
    for path, df in tables.items():
        for i, row in df.iterrows():
            rows.append((path, i, row))
    finished = [x for x in rows if x[2]["status"] in ("ok", "diverged", "collapsed")]
    origin: dict[str, tuple] = {}
    for path, i, row in sorted(finished, key=lambda x: str(x[2].get("date", ""))):
        origin.setdefault(row["run_id"], (path, i, row))
    shared = 0
    for path, i, row in finished:
        src_path, src_i, src = origin[row["run_id"]]
        df = tables[path]
        if (src_path, src_i) == (path, i):
            df.at[i, "shared_from"] = ""
            continue
        shared += 1
        for col in src.index:
            if col in KEEP or col.startswith(("model.", "data.", "train.")):
                continue
            if col not in df.columns:
                df[col] = None
            df.at[i, col] = src[col]
        df.at[i, "shared_from"] = src["grid"]
        ep, src_ep = curves[path], curves[src_path]
        if ep is not None and src_ep is not None:
            mine = ep[ep["run_id"] == row["run_id"]]
            copy = src_ep[src_ep["run_id"] == row["run_id"]].copy()
            copy["grid"], copy["cell"] = row["grid"], row["cell"]
            curves[path] = pd.concat([ep.drop(mine.index), copy], ignore_index=True)
    if not dry_run:
        for path, df in tables.items():
            store.atomic_write_csv(df, path)
            if curves[path] is not None:
                ep = curves[path].sort_values(["run_id", "epoch"], kind="stable")
                store.atomic_write_csv(ep, path.with_name(path.stem + ".epochs.csv"))
    summary = {
        "tables": len(tables),
        "rows": len(rows),
        "runs": len({r["run_id"] for _, _, r in rows}),
        "shared_rows": shared,
    }
    print(
        f"{summary['rows']} rows in {summary['tables']} tables are {summary['runs']} runs: "
        f"{shared} rows are a run that another row already trained"
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m experiments reindex",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("ablations", nargs="?", default="ablations")
    p.add_argument("--results", default=None, help="results folder (default results/)")
    p.add_argument("--dry-run", action="store_true", help="count, write nothing")
    args = p.parse_args(argv)
    reindex(Path(args.ablations), Path(args.results) if args.results else None, args.dry_run)
    return 0
