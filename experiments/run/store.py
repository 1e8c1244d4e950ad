"""Results: one row per run, read back from the study and exported as tidy tables.

A finished run writes its row (config, metrics, cost, provenance) as the ``result`` user
attribute of its trial, so there is one place of truth however many workers ran. ``export``
picks one row per run id (a finished attempt over a failed one, the latest among equals),
keeps every row the table already had that the study does not know (nothing committed is
lost), and writes ``results/<paper>/<table>.csv`` and the per-epoch curves
``<table>.epochs.csv``, each atomically (write a temporary file, then rename).

The committed tables are also the memory of what was trained: ``committed_index`` reads every
table under ``results/``, so a run (identified by its resolved configuration, see
``experiments.run.identity``) that any grid already trained is reused, with or without ``runs/``;
its row in the reusing grid names the grid that trained it in ``shared_from``.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from pathlib import Path

import optuna
import pandas as pd

from experiments.config.spec import DEFAULT_PROFILE
from experiments.run.queue import FINISHED


def results_root(results_dir: str | Path | None = None) -> Path:
    """Where tables go: ``results_dir`` when given (``--results``), else the user's default
    ``ABLATE_RESULTS``, else ``results/``. The only place that reads the variable."""
    return Path(results_dir or os.environ.get("ABLATE_RESULTS") or "results")


ID_COLUMNS = [
    "run_id",
    "grid",
    "paper",
    "table",
    "cell",
    "cell_index",
    "baseline_cell",
    "axes",
    "seed",
    "profile",
    "status",
    "error",
    "diverged_epoch",
    "restart_epoch",
    "shared_from",
]
METRIC_COLUMNS = [
    "test_top1",
    "test_top5",
    "test_loss",
    "val_top1",
    "best_val_top1",
    "best_epoch",
    "epochs_run",
]
COST_COLUMNS = [
    "params",
    "macs",
    "train_img_s",
    "infer_img_s",
    "peak_mem_mb",
    "wall_s",
    "run_s",
    "before_restart_s",
]
PROVENANCE_COLUMNS = [
    "git_sha",
    "git_dirty",
    "torch",
    "timm",
    "lightning",
    "numpy",
    "device",
    "cpu_model",
    "cpu_capability",
    "threads",
    "date",
]
EPOCH_COLUMNS = [
    "run_id",
    "grid",
    "cell",
    "seed",
    "epoch",
    "train_loss",
    "train_top1",
    "val_loss",
    "val_top1",
    "lr",
]


def flatten(config: dict, prefix: str = "") -> dict:
    """``{"model": {"layers": "low"}}`` -> ``{"model.layers": "low"}``; lists become text."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = str(value) if isinstance(value, (list, tuple)) else value
    return out


def cpu_model() -> str:
    """The CPU's model name (what decides the kernels and so the last bits of a result)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


# the checkout as this process found it when it imported its code: a row names the code its
# worker runs, even if commits land or files change while the run trains. Dirty means the
# tracked code differs from the commit; the results tables a grid writes as it goes do not count
GIT_AT_START = {
    "git_sha": _git("rev-parse", "--short=12", "HEAD"),
    "git_dirty": bool(
        _git("status", "--porcelain", "--untracked-files=no", "--", ":/", ":(top,exclude)results")
    ),
}


def provenance() -> dict:
    """What decides the numbers of a run besides its config: code (as this process started
    on it), libraries, hardware."""
    import lightning
    import numpy
    import timm
    import torch

    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"cpu ({platform.machine()}, {os.cpu_count()} cores)"
    )
    return {
        **GIT_AT_START,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "lightning": lightning.__version__,
        "numpy": numpy.__version__,
        "device": device,
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def make_row(run: dict, result: dict) -> dict:
    """The stored row of one run: identity, flattened config, metrics, cost, provenance."""
    row = {k: run.get(k) for k in ID_COLUMNS if k in run}
    row["shared_from"] = ""
    row.update(flatten(run["config"]))
    row.update({k: v for k, v in result.items() if k not in ("epochs", "threads")})
    here = provenance()
    if result.get("threads"):  # the threads the run trained at (a resumed run: its first's)
        here["threads"] = result["threads"]
    row.update(here)
    return row


def chosen_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """One trial per run id: the latest finished one, else the latest with a result."""
    best: dict[str, optuna.trial.FrozenTrial] = {}
    for t in study.get_trials(deepcopy=False):
        rid = t.user_attrs.get("run_id")
        if not rid or "result" not in t.user_attrs:
            continue
        cur = best.get(rid)
        rank = (t.state in FINISHED, t.number)
        if cur is None or rank > (cur.state in FINISHED, cur.number):
            best[rid] = t
    return sorted(best.values(), key=lambda t: t.number)


def tables(study: optuna.Study) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, epochs = [], []
    for t in chosen_trials(study):
        row = dict(t.user_attrs["result"])
        rows.append(row)
        for e in t.user_attrs.get("epochs", []):
            epochs.append(
                {
                    "run_id": row["run_id"],
                    "grid": row["grid"],
                    "cell": row["cell"],
                    "seed": row["seed"],
                    **e,
                }
            )
    df = pd.DataFrame(rows)
    if not df.empty:
        ordered = [c for c in ID_COLUMNS if c in df] + sorted(
            c for c in df if c.startswith(("model.", "data.", "train."))
        )
        rest = [c for c in METRIC_COLUMNS + COST_COLUMNS + PROVENANCE_COLUMNS if c in df]
        other = [c for c in df if c not in ordered + rest]
        sort = ["cell_index", "seed"] if "cell_index" in df else ["cell", "seed"]
        df = df[ordered + rest + other].sort_values(sort, kind="stable")
    ep = pd.DataFrame(epochs, columns=EPOCH_COLUMNS)
    return df, ep


def atomic_write_csv(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)


# what tells one CPU from another in a benchmark table
CPU_COLUMNS = ("cpu_capability", "cpu_model")


def merge_setting_rows(path: Path, table: pd.DataFrame, setting: list[str]) -> pd.DataFrame:
    """``table`` plus the rows already in ``path`` whose ``setting`` columns differ: a
    benchmark re-run at one size or thread count keeps the figures of the others, and one
    re-run on another CPU (another instruction set, AVX2 or AVX-512, or another maker's chip
    with the same one) keeps the first CPU's beside it."""
    if not path.exists():
        return table
    old = pd.read_csv(path)
    if not set(setting) <= set(old.columns):
        return table
    for cpu in CPU_COLUMNS:
        if cpu in table and cpu not in old:  # rows from before the CPU was recorded:
            old = old.assign(**{cpu: None})  # another CPU for all we know
    setting = [*setting, *(c for c in CPU_COLUMNS if c in old and c in table)]
    same = old[setting].apply(tuple, axis=1).isin(table[setting].apply(tuple, axis=1))
    return pd.concat([old[~same], table], ignore_index=True)


def profile_stem(name: str, profile: str) -> str:
    """A table's file stem: ``name`` for the default profile, ``name.<profile>`` for the others."""
    return name if profile == DEFAULT_PROFILE else f"{name}.{profile}"


def result_paths(grid: str, profile: str, results_dir: Path | None = None) -> tuple[Path, Path]:
    """``results/<paper>/<table>.csv`` for the default profile; other profiles get a suffix."""
    base = results_root(results_dir) / grid
    stem = profile_stem(base.name, profile)
    return base.with_name(stem + ".csv"), base.with_name(stem + ".epochs.csv")


def read_table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"run_id": str, "shared_from": str}, keep_default_na=True)


CELL_ORDER = "cell_order"  # study attribute: the grid's cell labels, in the spec's order


def record_cell_order(study: optuna.Study, cells: list[str]) -> None:
    """Store the spec's current cell order on the study (a grid's enqueue does it), so every
    export, a worker's too, writes each row with the cell index the spec gives it now rather
    than the one stored on its trial when an older wording of the spec enqueued it."""
    if study.user_attrs.get(CELL_ORDER) != cells:
        study.set_user_attr(CELL_ORDER, cells)


def export(
    study: optuna.Study,
    grid: str,
    profile: str,
    results_dir: Path | None = None,
    current: list[dict] | None = None,
) -> Path | None:
    """Write the grid's table: the study's rows plus the rows the table had that it lacks.

    ``current`` (the grid's run records as the spec words them now): a run the study finished
    under an older wording of the spec (a renamed preset, reordered axes) is written with the
    spec's current cell label and index, not the ones stored on its trial."""
    df, ep = tables(study)
    if not current:  # a worker's export: the cell order the last enqueue recorded
        order = study.user_attrs.get(CELL_ORDER) or []
        current = [{"cell": c, "cell_index": i, "run_id": None} for i, c in enumerate(order)]
    if current and not df.empty:
        index = {r["cell"]: r["cell_index"] for r in current}
        by_id = {r["run_id"]: r for r in reversed(current) if r["run_id"]}  # the first wins
        df = pd.DataFrame([_as_now(r, index, by_id) for r in df.to_dict("records")])
        df = df.sort_values(["cell_index", "seed"], kind="stable", ignore_index=True)
        cells = dict(zip(df["run_id"], df["cell"], strict=True))
        ep["cell"] = ep["run_id"].map(cells).fillna(ep["cell"])
    table, curves = result_paths(grid, profile, results_dir)
    if table.exists():
        old = read_table(table)
        old_ep = pd.read_csv(curves, dtype={"run_id": str}) if curves.exists() else None
        df, ep = _keep_own_trainings(df, ep, old, old_ep)
        keep = old[~old["run_id"].isin(df["run_id"] if not df.empty else [])]
        if not keep.empty:
            df = pd.concat([df, keep], ignore_index=True) if not df.empty else keep
            sort = ["cell_index", "seed"] if "cell_index" in df else ["cell", "seed"]
            df = df.sort_values(sort, kind="stable")
        if old_ep is not None:
            ep = pd.concat([ep, old_ep[old_ep["run_id"].isin(keep["run_id"])]], ignore_index=True)
    if df.empty:
        return None
    atomic_write_csv(df, table)
    atomic_write_csv(ep, curves)
    return table


def _keep_own_trainings(
    df: pd.DataFrame, ep: pd.DataFrame, old: pd.DataFrame, old_ep: pd.DataFrame | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The study's rows, except where the table holds the run as this grid's own training and
    the study has only a copy of another grid's row: then the table's row and curve stay (with
    the study's cell label). A queue older than the tables (one that took the run from another
    grid's table before this grid's own training was committed) would otherwise overwrite the
    grid's own metrics, timing and provenance with the other grid's, and the compute table
    would lose a training it paid for."""
    if df.empty or "shared_from" not in df or "shared_from" not in old:
        return df, ep
    trained = old["status"].isin(["ok", "diverged", "collapsed"]) & (
        old["shared_from"].fillna("") == ""
    )
    own = old[trained].drop_duplicates("run_id").set_index("run_id")
    copied = (df["shared_from"].fillna("") != "") & df["run_id"].isin(own.index)
    if not copied.any():
        return df, ep
    ids = set(df.loc[copied, "run_id"])
    labels = [c for c in ("cell", "cell_index") if c in df]
    rows = [
        {**own.loc[r["run_id"]].to_dict(), "run_id": r["run_id"], **{k: r[k] for k in labels}}
        if r["run_id"] in ids
        else r
        for r in df.to_dict("records")
    ]
    columns = list(df.columns) + [c for c in old.columns if c not in df.columns]
    df = pd.DataFrame(rows, columns=columns)
    if old_ep is not None:  # the table's curve, where it has one, with the study's label
        cells = dict(zip(df["run_id"], df["cell"], strict=True))
        mine = old_ep[old_ep["run_id"].isin(ids)].assign(cell=lambda e: e["run_id"].map(cells))
        ep = pd.concat([ep[~ep["run_id"].isin(set(mine["run_id"]))], mine], ignore_index=True)
    return df, ep


def _as_now(row: dict, index: dict[str, int], by_id: dict[str, dict]) -> dict:
    """A study row with its cell index as the spec has it now, relabelled if its cell is gone."""
    if row.get("cell") in index:
        return {**row, "cell_index": index[row["cell"]]}
    run = by_id.get(row["run_id"])
    return relabel(row, run) if run is not None else row


# ----------------------------------------------------------------------------- reuse
NOT_TABLES = ("bench", "sweeps", "reference", "figures", "html", "reproduce", "noise")


def table_paths(results_dir: Path | None = None) -> list[Path]:
    """Every per-run results table under ``results/`` (not curves, bench or sweeps)."""
    root = results_root(results_dir)
    return sorted(
        p
        for p in root.glob("*/*.csv")
        if not p.name.endswith(".epochs.csv") and p.parent.name not in NOT_TABLES
    )


def committed_index(
    results_dir: Path | None = None, own_grid: str | None = None
) -> dict[str, tuple[dict, list[dict]]]:
    """run id -> (row, per-epoch curve) of every finished run (ok or diverged) in the tables.

    Where several tables hold a run, the row of a grid that trained it is taken: ``own_grid``'s
    own training first (a run two grids trained keeps its own row, date and time in each grid's
    table, so the compute table still counts both trainings), else the first such table.
    """
    index: dict[str, tuple[dict, list[dict]]] = {}
    for path in table_paths(results_dir):
        df = read_table(path)
        if "status" not in df or "run_id" not in df:
            continue
        df = df[df["status"].isin(["ok", "diverged", "collapsed"])]
        if df.empty:
            continue
        curves_path = path.with_name(path.stem + ".epochs.csv")
        curves = (
            pd.read_csv(curves_path, dtype={"run_id": str})
            if curves_path.exists()
            else pd.DataFrame(columns=EPOCH_COLUMNS)
        )
        by_run = {rid: g for rid, g in curves.groupby("run_id")}
        for row in df.to_dict("records"):
            row = {k: (None if _missing(v) else v) for k, v in row.items()}
            rid = row["run_id"]
            mine = own_grid is not None and row.get("grid") == own_grid
            trained = not row.get("shared_from")
            if rid in index and not (mine and trained):
                held = index[rid][0]
                if not trained or not held.get("shared_from"):
                    continue  # keep the row of a grid that trained it (the first such table)
            epochs = by_run.get(rid)
            rows = [] if epochs is None else _epoch_rows(epochs)
            index[rid] = (row, rows)
    return index


def _missing(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _epoch_rows(df: pd.DataFrame) -> list[dict]:
    keep = [c for c in EPOCH_COLUMNS if c not in ("run_id", "grid", "cell", "seed")]
    out = []
    for r in df.sort_values("epoch").to_dict("records"):
        out.append({k: (None if _missing(r.get(k)) else r.get(k)) for k in keep})
    return out


def relabel(row: dict, run: dict) -> dict:
    """A finished run's row as the grid ``run`` belongs to would have written it.

    A row of the grid's own table comes back unchanged (a rerun rewrites nothing)."""
    source = row.get("shared_from") or row.get("grid")
    if row.get("grid") == run["grid"] and row.get("cell") == run["cell"]:
        return {**row, "shared_from": row.get("shared_from") or ""}
    out = {k: v for k, v in row.items() if not k.startswith(("model.", "data.", "train."))}
    out.update({k: run.get(k) for k in ID_COLUMNS if k in run})
    out.update(flatten(run["config"]))
    out["shared_from"] = "" if source == run["grid"] else source
    return out
