"""Results: one row per run, read back from the study and exported as tidy tables.

The study *is* the store: a finished run writes its row (config, metrics, cost, provenance)
as the ``result`` user attribute of its trial, so there is exactly one place of truth however
many workers ran. ``export`` picks one row per run id (a finished attempt over a failed one,
the latest among equals) and writes ``results/<paper>/<table>.csv`` and the per-epoch curves
``<table>.epochs.csv``, each atomically (write a temporary file, then rename).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from pathlib import Path

import optuna
import pandas as pd

from experiments.queue import FINISHED


def results_root() -> Path:
    """Tables are exported here (``ABLATE_RESULTS`` overrides ``results/``)."""
    return Path(os.environ.get("ABLATE_RESULTS", "results"))


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
]
PROVENANCE_COLUMNS = ["git_sha", "git_dirty", "torch", "timm", "lightning", "device", "date"]
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


def provenance() -> dict:
    import lightning
    import timm
    import torch

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"cpu ({platform.machine()}, {os.cpu_count()} cores)"
    )
    return {
        "git_sha": git("rev-parse", "--short=12", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "lightning": lightning.__version__,
        "device": device,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def make_row(run: dict, result: dict) -> dict:
    """The stored row of one run: identity, flattened config, metrics, cost, provenance."""
    row = {k: run.get(k) for k in ID_COLUMNS if k in run}
    row.update(flatten(run["config"]))
    row.update({k: v for k, v in result.items() if k != "epochs"})
    row.update(provenance())
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


def result_paths(grid: str, profile: str, results_dir: Path | None = None) -> tuple[Path, Path]:
    """``results/<paper>/<table>.csv`` for the quick profile; other profiles get a suffix."""
    base = Path(results_dir or results_root()) / grid
    stem = base.name if profile == "quick" else f"{base.name}.{profile}"
    return base.with_name(stem + ".csv"), base.with_name(stem + ".epochs.csv")


def export(
    study: optuna.Study, grid: str, profile: str, results_dir: Path | None = None
) -> Path | None:
    df, ep = tables(study)
    if df.empty:
        return None
    table, curves = result_paths(grid, profile, results_dir)
    atomic_write_csv(df, table)
    atomic_write_csv(ep, curves)
    return table
