"""A claims campaign over one paper: claim cells first, then seeds by precision, breadth first.

Why breadth first: a grid that runs its seed rounds to the cap before the next grid starts
spends a sitting on one claim while the paper's others wait at their first batch. Here every
grid of the paper gets its first batch of seeds (claim cells only), then each grid in turn gets
one more round for its open claims, and the passes repeat until no grid has a claim left open
(decided, precise or at the cap: ``experiments.run.seeds``). Everything it trains is in the
tables as it finishes, so an interrupted campaign resumes with the same command.
"""

from __future__ import annotations

from pathlib import Path

from experiments.config.spec import SpecError, find_specs, load_spec
from experiments.run import store
from experiments.run.runner import run_grid

ABLATIONS = Path(__file__).resolve().parents[2] / "ablations"


def _finished(specs: list[Path], profile: str, results_dir: Path | None) -> int:
    """Rows in the paper's tables at this profile (each finished run of each grid)."""
    n = 0
    for path in specs:
        grid = load_spec(path, build_models=False).name
        table, _ = store.result_paths(grid, profile, results_dir)
        if table.exists():
            n += len(store.read_table(table))
    return n


def run_campaign(
    paper: str,
    profile: str = "quick",
    workers: int | str = 1,
    storage: str | None = None,
    progress: bool = True,
    results_dir: Path | None = None,
    ablations_dir: Path | None = None,
) -> int:
    """Run ``paper``'s claims campaign; returns the number of passes that trained something."""
    root = Path(ablations_dir or ABLATIONS)
    specs = find_specs(root / paper) if (root / paper).is_dir() else []
    if not specs:
        papers = sorted(p.name for p in root.iterdir() if p.is_dir() and find_specs(p))
        raise SpecError(root / paper, "paper", f"no grid specs; allowed: {', '.join(papers)}")
    kwargs = dict(workers=workers, storage=storage, progress=progress, results_dir=results_dir)
    for path in specs:  # the first batch of seeds, claim cells only
        run_grid(path, profile, claims_only=True, max_rounds=0, **kwargs)
    passes = 0
    while True:
        before = _finished(specs, profile, results_dir)
        for path in specs:
            run_grid(path, profile, claims_only=True, max_rounds=1, **kwargs)
        if _finished(specs, profile, results_dir) == before:
            break
        passes += 1
        print(f"[{paper}] campaign pass {passes} done", flush=True)
    print(f"[{paper}] campaign: every claim decided, precise or at the seed cap", flush=True)
    return passes
