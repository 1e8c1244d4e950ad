"""Reading the results: the runner's tidy tables, per-epoch curves, the claims, the papers' numbers.

Why apart from the statistics: every reader (report, notebooks, runner, bench) loads the same
tables the same way (identity columns as text, each profile kept apart), and loading needs no
statistics.
"""

from __future__ import annotations

import glob
import warnings
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

SKIP_DIRS = {"reference", "sweeps", "figures", "html", "bench", "reproduce", "noise"}
TEXT_COLUMNS = {
    c: str
    for c in [
        "run_id",
        "grid",
        "paper",
        "table",
        "cell",
        "baseline_cell",
        "axes",
        "profile",
        "status",
        "error",
        "git_sha",
    ]
}
ROOT = Path(__file__).resolve().parents[2]
REFERENCE_DIR = ROOT / "results" / "reference"
ABLATIONS_DIR = ROOT / "ablations"


def _csv_files(source: str | Path | Iterable[str | Path], epochs: bool) -> list[Path]:
    """Result tables under a file, a directory (recursively) or a glob; epochs or runs only."""
    if isinstance(source, (str, Path)):
        source = [source]
    files: list[Path] = []
    for item in source:
        path = Path(item)
        if path.is_dir():
            found = [
                p
                for p in sorted(path.rglob("*.csv"))
                if not SKIP_DIRS.intersection(p.relative_to(path).parts[:-1])
            ]
        elif any(ch in str(item) for ch in "*?["):
            found = sorted(Path(p) for p in glob.glob(str(item), recursive=True))
        else:
            found = [path] if path.exists() else []
        files += [p for p in found if p.name.endswith(".epochs.csv") == epochs]
    return files


def load_results(
    source: str | Path | Iterable[str | Path], *, profile: str | None = None
) -> pd.DataFrame:
    """Concatenate result tables (all statuses); keep one profile when ``profile`` is given.

    Identity columns are read as text, so a hex run id such as ``1e50`` stays a string.
    A missing source gives an empty frame with the identity columns, so callers can show
    "not run yet" instead of failing.
    """
    frames = []
    for path in _csv_files(source, epochs=False):
        frame = pd.read_csv(path, dtype=TEXT_COLUMNS, keep_default_na=True)
        if {"grid", "cell", "status"} <= set(frame.columns):
            frames.append(frame)
        else:
            warnings.warn(
                f"{path}: not a results table (needs grid, cell, status); skipped", stacklevel=2
            )
    df = (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(TEXT_COLUMNS))
    )
    for column in ["paper", "grid", "profile", "cell", "baseline_cell", "status", "error"]:
        if column not in df:
            df[column] = ""
        df[column] = df[column].fillna("").astype(str)
    if "paper" in df and (df["paper"] == "").any():
        df.loc[df["paper"] == "", "paper"] = df["grid"].str.split("/").str[0]
    if "seed" not in df:
        df["seed"] = pd.Series(dtype="int64")
    if profile is not None:
        df = df[df["profile"] == profile].reset_index(drop=True)
    return df


def load_epochs(
    source: str | Path | Iterable[str | Path], *, results: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per-epoch curves; restricted to the ok runs of ``results`` (adds their profile) if given."""
    files = _csv_files(source, epochs=True)
    frames = [pd.read_csv(p, dtype={"run_id": str, "grid": str, "cell": str}) for p in files]
    columns = ["run_id", "grid", "cell", "seed", "epoch", "val_top1"]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    if results is not None:
        ok = results.loc[results["status"] == "ok", ["run_id", "paper", "profile"]]
        df = df.merge(ok.drop_duplicates("run_id"), on="run_id", how="inner")
    return df


def reference_dir(results_dir: str | Path | None = None) -> Path:
    """``<results_dir>/reference`` if it holds paper_results.csv, else the repository's own."""
    if results_dir is not None:
        candidate = Path(results_dir) / "reference"
        if (candidate / "paper_results.csv").exists():
            return candidate
    return REFERENCE_DIR


CLAIM_COLUMNS = [
    "paper",
    "grid",
    "claim",
    "cell",
    "versus_cell",
    "expect",
    "expected_sign",
    "margin",
    "paper_table",
    "paper_model",
    "versus_table",
    "versus_model",
    "source",
    "note",
]


def load_claims(ablations_dir: str | Path | None = None) -> pd.DataFrame:
    """The papers' claims as data, from the ``claims:`` of every grid spec under ``ablations/``.

    One row per claim: ``cell`` beats ``versus_cell`` (``expect`` better, ``expected_sign`` 1),
    loses to it (worse, -1), matches it (equivalent, 0) or is not worse than it by more than the
    margin (not_worse, 1); ``paper_table``/``paper_model`` (and ``versus_*``) point into
    ``paper_results.csv`` where the paper publishes a number for the cell.
    """
    from experiments.config.spec import EXPECTS, find_specs, load_spec

    root = Path(ablations_dir) if ablations_dir else ABLATIONS_DIR
    rows = []
    for spec_path in find_specs(root) if root.is_dir() else []:
        spec = load_spec(spec_path, build_models=False)
        for c in spec.claims:
            rows.append(
                {
                    "paper": spec.paper,
                    "grid": spec.name,
                    "claim": c["text"],
                    "cell": c["cell"],
                    "versus_cell": c["versus"],
                    "expect": c["expect"],
                    "expected_sign": EXPECTS[c["expect"]],
                    "margin": float(c.get("margin", 0.5)),
                    **{k: str(c.get(k, "")) for k in CLAIM_COLUMNS[8:]},
                }
            )
    claims = pd.DataFrame(rows, columns=CLAIM_COLUMNS)
    claims["expected_sign"] = claims["expected_sign"].astype(int)
    return claims


def load_paper_results(path: str | Path | None = None) -> pd.DataFrame:
    """Published numbers; ``table`` is text ("5", "L", "main")."""
    path = Path(path) if path is not None else REFERENCE_DIR / "paper_results.csv"
    paper = pd.read_csv(path, dtype=str, keep_default_na=False)
    paper["value"] = pd.to_numeric(paper["value"])
    return paper
