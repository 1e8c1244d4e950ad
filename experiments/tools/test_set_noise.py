"""How much of the seed-to-seed noise of a claim is the finite test set?

Why: a claim's paired difference (variant minus baseline, same seed) varies from seed to seed
by 0.55-0.7 pp on the quick profile, and the seeds a claim needs grow with that variance. Part
of it is the 10,000-image test split itself: two networks trained with different seeds get
different images wrong, and a finite test set counts those images with sampling error. The
quick profile trains on 5,000 of Fashion-MNIST's 60,000 training images and validates on
1,000; the other 54,000 are never seen and come from the same distribution. Evaluating the
trained networks on many of them tells how the variance of the paired difference falls with
the number of evaluation images, ``var(N) = s2_dist + c / N``: ``c / N`` is the evaluation
sampling, ``s2_dist`` the part no evaluation set removes (training noise).

The script reloads the final checkpoint of every run of a claim's two cells that is still in
``runs/`` (its last epoch is the tested network), checks that it reproduces the committed
``test_top1`` exactly, and records which test and held-out images each network gets right
(``results/noise/<paper>-<table>.npz``, packed bits, resumable). ``--analyse`` fits the
variance law over random evaluation subsets of both pools and writes
``results/noise/summary.csv``.

Usage::

    python -m experiments.tools.test_set_noise ablations/casvit/local.yaml --holdout 20000
    python -m experiments.tools.test_set_noise --analyse
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import modules  # noqa: F401  (registers our models)
from experiments.config.spec import load_spec
from experiments.run.data import LOADERS, DataConfig, Split, adapt, holdout, resolve_val_size
from experiments.run.datamodule import ImageDataModule
from experiments.run.lit import ClassificationModule
from experiments.run.queue import runs_dir
from experiments.run.store import atomic_write_csv, results_root
from experiments.run.train import CHECKPOINT

MODULE_ARGS = ("model_name", "model_kwargs", "num_classes", "in_chans", "img_size", "train")


def noise_dir() -> Path:
    return results_root() / "noise"


def data_config(row: pd.Series) -> DataConfig:
    """The run's data config from its ``data.*`` columns (unset fields keep their default)."""
    fields = {f.name for f in dataclasses.fields(DataConfig)}
    given = {
        k.split(".", 1)[1]: v
        for k, v in row.items()
        if k.startswith("data.") and k.split(".", 1)[1] in fields and pd.notna(v)
    }
    for key in ("subset", "val_size", "batch_size", "eval_batch_size", "crop_padding"):
        if key in given:
            given[key] = int(given[key])
    return DataConfig(**given)


def eval_splits(cfg: DataConfig, size: int) -> dict[str, Split]:
    """The training split the run saw, the test split and ``size`` held-out training images
    (none for 0), prepared and normalised as the run's data module prepares them."""
    dm = ImageDataModule(cfg)
    dm.setup()
    splits = {"train": dm.train, "test": dm.test}
    if size:
        train, _, k = LOADERS[cfg.name](cfg)
        train.x = adapt(train.x, cfg.img_size, cfg.channels)
        val = resolve_val_size(cfg, len(train))
        splits["holdout"] = holdout(train, val, cfg.subset, cfg.split_seed, k, size)
    return {name: Split(dm.normalize(s.x), s.y) for name, s in splits.items()}


def recompute_bn(net: torch.nn.Module, train: Split, batches: int, batch: int, seed: int) -> None:
    """Precise BN (the ``train.precise_bn`` option of a run): BatchNorm statistics over
    ``batches`` shuffled, unaugmented training batches instead of the running averages."""
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    chunks = [train.x[i] for i in order[: batches * batch].split(batch)]
    with torch.no_grad():
        torch.optim.swa_utils.update_bn(chunks, net)
    net.eval()


def correct(
    ckpt: Path,
    splits: dict[str, Split],
    batch: int,
    bn_batches: int = 0,
    seed: int = 0,
    bn_batch: int = 64,
) -> dict[str, np.ndarray]:
    """Per evaluation split, a bool per image: does the checkpoint's network classify it
    right? With ``bn_batches``, after precise BN over that many training batches."""
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    hp = {k: v for k, v in state["hyper_parameters"].items() if k in MODULE_ARGS}
    module = ClassificationModule(**hp)
    module.load_state_dict(state["state_dict"])
    module.eval()
    net = module.ema.module if module.ema is not None else module.model
    if bn_batches:
        recompute_bn(net, splits["train"], bn_batches, bn_batch, seed)
    splits = {k: v for k, v in splits.items() if k != "train"}
    out = {}
    with torch.inference_mode():
        for name, s in splits.items():
            pairs = zip(s.x.split(batch), s.y.split(batch), strict=True)
            out[name] = torch.cat([net(x).argmax(1) == y for x, y in pairs]).numpy()
    return out


def claim_runs(
    spec_path: str, profile: str, pairs: list[tuple[str, str]] | None = None
) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """The ok rows of the compared cells (default: every claim's) whose checkpoint is still on
    disk, and the (cell, versus) pairs.

    A row copied from another grid (``shared_from``) was trained in that grid's directory:
    its checkpoint is read there. This grid's own directory may hold a training of the same
    run that was interrupted before the copy was taken (a stale checkpoint)."""
    spec = load_spec(spec_path, build_models=False)
    table = pd.read_csv(results_root() / spec.paper / f"{spec.table}.csv")
    pairs = pairs or [(c["cell"], c["versus"]) for c in spec.claims]
    cells = {c for pair in pairs for c in pair}
    rows = table[(table.status == "ok") & (table.profile == profile) & table.cell.isin(cells)]
    trained_in = rows.get("shared_from", pd.Series(index=rows.index, dtype=object))
    trained_in = trained_in.fillna("").astype(str).replace("", spec.name)
    ckpt = [runs_dir() / grid / profile / rid / CHECKPOINT
            for grid, rid in zip(trained_in, rows.run_id, strict=True)]  # fmt: skip
    on_disk = [p.is_file() for p in ckpt]
    return rows[on_disk].assign(ckpt=[str(p) for p in ckpt if p.is_file()]), pairs


def _store(path: Path, records: dict[str, dict], pairs: list[tuple[str, str]]) -> None:
    arrays = {"pairs": np.array(pairs, dtype=str)}
    for rid, rec in records.items():
        for split, hits in rec.items():
            arrays[f"{rid}/{split}"] = np.packbits(hits)
            arrays[f"{rid}/{split}/n"] = np.array(len(hits))
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def load_records(path: Path) -> dict[str, dict[str, np.ndarray]]:
    if not path.is_file():
        return {}
    z = np.load(path)
    out: dict[str, dict[str, np.ndarray]] = {}
    for key in z.files:
        parts = key.split("/")
        if len(parts) == 2 and key != "pairs":
            rid, split = parts
            n = int(z[f"{key}/n"])
            out.setdefault(rid, {})[split] = np.unpackbits(z[key])[:n].astype(bool)
    return out


def measure(
    spec_path: str, profile: str, size: int, batch: int, pairs=None, bn_batches: int = 0
) -> Path:
    rows, pairs = claim_runs(spec_path, profile, pairs)
    spec = load_spec(spec_path, build_models=False)
    variant = f".pbn{bn_batches}" if bn_batches else ""
    path = noise_dir() / f"{spec.paper}-{spec.table}{variant}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    records = load_records(path)
    todo = rows[~rows.run_id.isin(records)]
    print(f"{spec.name}: {len(rows)} runs with a checkpoint, {len(todo)} to evaluate", flush=True)
    splits = None
    for i, (_, row) in enumerate(todo.iterrows()):
        cfg = data_config(row)  # one profile per grid table read here: the same splits for all
        splits = splits or eval_splits(cfg, size)
        rec = correct(Path(row.ckpt), splits, batch, bn_batches, int(row.seed), cfg.batch_size)
        top1 = 100 * rec["test"].mean()
        if not bn_batches and abs(top1 - row.test_top1) > 1e-3:  # not the tested network
            print(f"  {row.run_id}: test {top1:.2f} != committed {row.test_top1:.2f}, skipped")
            continue
        records[row.run_id] = rec
        _store(path, records, pairs)
        held = f" holdout {100 * rec['holdout'].mean():.2f}" if "holdout" in rec else ""
        print(
            f"  {i + 1}/{len(todo)} {row.run_id} {row.cell} seed {row.seed}: test {top1:.2f}{held}",
            flush=True,
        )
    return path


SIZES = (1000, 2000, 5000, 10000, 20000)
DRAWS = 200


def test_share(profile: str = "quick") -> float:
    """Share of a run's wall time its 10,000-image test pass takes (``bench --only overhead``)."""
    bench = pd.read_csv(results_root() / "bench" / "overhead.csv")
    rows = bench[(bench.profile == profile) & bench.test_share.notna()]
    return float(rows.sort_values("date").test_share.iloc[-1])


def variance_law(
    d: np.ndarray, rng: np.random.Generator, draws: int = DRAWS
) -> tuple[float, float, dict]:
    """Fit ``var(N) = s2_dist + c / N`` to the seed variance of the mean of ``d`` (seeds x
    images of paired differences in {-1, 0, 1}) over random subsets of N images."""
    pool = d.shape[1]
    points = {}
    for n in [n for n in SIZES if n < pool] + [pool]:
        k = 1 if n == pool else draws
        v = [d[:, rng.choice(pool, n, replace=False)].mean(1).var(ddof=1) for _ in range(k)]
        points[n] = float(np.mean(v))
    x = np.array([1 / n for n in points])
    y = np.array(list(points.values()))
    c, s2 = np.polyfit(x, y, 1)
    return float(s2), float(c), points


def pair_summary(records, cells: pd.DataFrame, cell: str, versus: str, share: float, rng):
    """The noise of one paired comparison on the test split, and, where measured, on the
    held-out images and both together (the variance law and what 54,000 images would give)."""
    a = cells[(cells.cell == cell) & cells.run_id.isin(records)].set_index("seed").run_id
    b = cells[(cells.cell == versus) & cells.run_id.isin(records)].set_index("seed").run_id
    seeds = sorted(set(a.index) & set(b.index))
    if len(seeds) < 3:
        return None
    splits = [k for k in ("test", "holdout") if k in records[a[seeds[0]]]]
    diff = {
        split: np.stack(
            [records[a[s]][split].astype(np.int8) - records[b[s]][split] for s in seeds]
        )
        for split in splits
    }
    row = {"cell": cell, "versus": versus, "seeds": len(seeds)}
    for split in splits:
        row[f"delta_{split}"] = 100 * diff[split].mean()
        row[f"sd_{split}"] = 100 * diff[split].mean(1).std(ddof=1)
        row[f"per_image_sd_{split}"] = (
            100 * (diff[split].var(0, ddof=1).mean() / diff[split].shape[1]) ** 0.5
        )
    if "holdout" not in diff:
        return row
    both = np.concatenate([diff["test"], diff["holdout"]], axis=1)
    s2, c, points = variance_law(both, rng)
    n_test = diff["test"].shape[1]
    full = n_test + 54000  # the test split and every training image the profile leaves unused

    def var(n: int) -> float:
        return max(s2 + c / n, 1e-12)

    ratio = var(full) / var(n_test)
    cost = 1 + share * (full - n_test) / n_test
    return row | {
        "holdout_images": diff["holdout"].shape[1],
        "per_image_var": float(both.var(0, ddof=1).mean()),  # c if images were independent
        "c_fit": c,
        "sd_dist": 100 * max(s2, 0.0) ** 0.5,
        "sd_fit_10k": 100 * var(n_test) ** 0.5,
        "sd_fit_64k": 100 * var(full) ** 0.5,
        "share_sampling_10k": min(1.0, (c / n_test) / var(n_test)),
        "seeds_ratio_64k": ratio,
        "eval_cost_64k": cost,
        "compute_ratio_64k": ratio * cost,
        "subset_sd": ";".join(f"{n}:{100 * v**0.5:.3f}" for n, v in points.items()),
    }


def analyse(seed: int = 0) -> pd.DataFrame:
    """One row per measured comparison and BN variant; written to ``results/noise/summary.csv``."""
    rng = np.random.default_rng(seed)
    share = test_share()
    out = []
    for path in sorted(p for p in noise_dir().glob("*.npz") if ".tmp" not in p.suffixes):
        paper, rest = path.stem.split("-", 1)
        table, _, variant = rest.partition(".")
        bn = f"precise, {variant[3:]} batches" if variant.startswith("pbn") else "running averages"
        records = load_records(path)
        pairs = [tuple(p) for p in np.load(path)["pairs"]]
        columns = ["run_id", "cell", "seed"]
        cells = pd.read_csv(results_root() / paper / f"{table}.csv", usecols=columns)
        for cell, versus in pairs:
            row = pair_summary(records, cells, cell, versus, share, rng)
            if row is not None:
                out.append({"paper": paper, "grid": table, "bn": bn, **row, "test_share": share})
    summary = pd.DataFrame(out)
    atomic_write_csv(summary, noise_dir() / "summary.csv")
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("specs", nargs="*", help="grid specs whose claim cells to evaluate")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--holdout", type=int, default=20000, help="held-out training images")
    ap.add_argument("--batch", type=int, default=128, help="evaluation batch")
    ap.add_argument(
        "--pair",
        nargs=2,
        action="append",
        metavar=("CELL", "VERSUS"),
        help="compare these two cells instead of the spec's claims (repeatable)",
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--precise-bn",
        type=int,
        default=0,
        metavar="BATCHES",
        help="recompute BatchNorm statistics over this many training batches first",
    )
    ap.add_argument(
        "--analyse", action="store_true", help="fit the variance law, write the summary"
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    pairs = [tuple(p) for p in args.pair] if args.pair else None
    for spec in args.specs:
        measure(spec, args.profile, args.holdout, args.batch, pairs, args.precise_bn)
    if args.analyse:
        print(analyse().to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
