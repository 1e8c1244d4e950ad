"""A claims campaign over one paper: claim cells first, then seeds by precision, breadth first.

Why breadth first: a grid that runs its seed rounds to the cap before the next grid starts
spends a sitting on one claim while the paper's others wait at their first batch. Here every
grid of the paper gets its first batch of seeds (claim cells only), then each grid with a claim
still open gets one more round, and the passes repeat until no grid has a claim left open
(decided, precise or at the cap: ``experiments.run.seeds``). Each batch is one queue per grid
drained by one set of workers that move on to the next grid's queue when theirs is empty, so
no core idles at the end of a grid (a grid of 3 runs on 2 workers used to leave one core
waiting for the third). Everything it trains is in the tables as it finishes, so an
interrupted campaign resumes with the same command.
"""

from __future__ import annotations

import sys
from pathlib import Path

from experiments.config.spec import SpecError, find_specs
from experiments.run.runner import GridJob, choose_workers, drain, finish, next_round, prepare

ABLATIONS = Path(__file__).resolve().parents[2] / "ablations"


def _plan_pass(jobs: list[GridJob], storage, results_dir) -> list[GridJob]:
    """The next round of every grid that has a claim open; a round whose runs are all in the
    results tables already is walked through (it trains nothing) and the grid plans again."""
    active = []
    for job in jobs:
        while next_round(job, storage, results_dir):
            if job.added:
                active.append(job)
                break
    return active


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
    # the first batch of seeds, claim cells only, of every grid
    jobs = [prepare(path, profile, storage, None, results_dir, claims_only=True) for path in specs]
    chosen: int | None = None

    def drain_all(batch: list[GridJob]) -> None:
        nonlocal chosen
        pending = sum(j.added for j in batch)
        if chosen is None and (workers != "auto" or pending > 1):  # measured once, when it counts
            chosen = choose_workers(batch[0].spec, profile, workers, pending)
        drain(batch, chosen or 1, storage, progress, results_dir)

    passes = 0
    try:
        drain_all(jobs)
        while active := _plan_pass(jobs, storage, results_dir):
            drain_all(active)
            passes += 1
            print(f"[{paper}] campaign pass {passes} done", flush=True)
    except KeyboardInterrupt:
        print(f"\n[{paper}] interrupted; rerun the same command to continue.", file=sys.stderr)
        raise
    for job in jobs:
        finish(job, results_dir)
    print(f"[{paper}] campaign: every claim decided, precise or at the seed cap", flush=True)
    message = _open_claims_cost(paper, profile, results_dir, root)
    if message:
        print(message, flush=True)
    return passes


def _open_claims_cost(paper: str, profile: str, results_dir: Path | None, root: Path) -> str | None:
    """What the paper's claims left inconclusive at the cap would cost to decide."""
    from experiments.analysis import claims as cl
    from experiments.analysis import looks
    from experiments.analysis import stats as an
    from experiments.run import store

    results = an.load_results(store.results_root(results_dir), profile=profile)
    if results.empty:
        return None
    claims = an.load_claims(root)
    family = claims[claims["paper"] == paper]
    verdicts = cl.check_claims(looks.at_last_looks(results, family, root), family)
    return open_claims_message(paper, verdicts[verdicts["profile"] == profile], results)


def open_claims_message(paper: str, verdicts, results) -> str | None:
    """One line for the end of a campaign: the claims still open and the projected cost."""
    from experiments.analysis import projection

    projected = projection.project_open_claims(verdicts)
    if projected.empty:
        return None
    cost = projection.cost_to_decide(projected, results).iloc[0]
    hours = cost.filter(like="machine hours").iloc[0]
    return (
        f"[{paper}] {len(projected)} claim(s) still inconclusive; if their "
        f"effects hold, deciding them needs a median of {cost['median projected seeds']:.0f} "
        f"seeds, {cost['extra runs']} more runs, about {hours:.1f} h on a 2-core machine "
        "(raise seeds.cap in ablations/profiles.yaml; REPORT.md lists them)"
    )
