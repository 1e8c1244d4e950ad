"""Seeds chosen by precision: how many seeds each cell of a grid gets, round by round.

Why: a fixed number of seeds is too many for a large effect and too few for a small one. A
grid first runs its ``seeds`` for every cell (claim cells before the others), then adds
``batch`` seeds to both cells of every claim that is still open, until each claim is decided
or precise, or its cells reach ``cap`` seeds. The rule looks at interval width and verdict only
(never at which way a p-value leans), and the verdicts it reads are the confirmatory ones
(``experiments.analysis.claims``: Holm across the paper's claims).

A claim is *open* when its verdict is ``inconclusive`` and its adjusted interval is at least as
wide as its margin. (An interval narrower than the margin decides a difference or equivalence
claim at that level: either it excludes 0, or it lies inside ±margin. A not-worse claim whose
narrow interval straddles -margin stays inconclusive: more seeds would only locate the loss
more precisely, around the margin itself.)
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class SeedPolicy:
    """``batch`` seeds more per round for open claims, up to ``cap`` seeds per cell.

    ``cap: 0`` (the default) means no extra seeds: a grid runs its ``seeds`` and stops.
    """

    batch: int = 3
    cap: int = 0

    @property
    def adaptive(self) -> bool:
        return self.cap > 0


def open_claims(verdicts: pd.DataFrame, policy: SeedPolicy) -> pd.DataFrame:
    """The claims the next round serves: undecided, imprecise and below the cap."""
    if verdicts.empty:
        return verdicts
    undecided = verdicts["verdict"] == "inconclusive"
    imprecise = ~verdicts["precise"].fillna(False).astype(bool)
    below_cap = verdicts["n_pairs"].fillna(0) < policy.cap
    return verdicts[undecided & imprecise & below_cap]


def next_seeds(
    verdicts: pd.DataFrame, have: dict[str, list[int]], policy: SeedPolicy
) -> dict[str, list[int]]:
    """The seeds to add per cell: ``batch`` more (capped) for both cells of each open claim.

    ``have`` maps a cell to the seeds it has run (or queued). Seeds continue the cell's
    numbering, so paired cells share them and a rerun plans the same seeds again.
    """
    plan: dict[str, list[int]] = {}
    for claim in open_claims(verdicts, policy).itertuples():
        cells = (claim.cell, claim.versus_cell)
        n = max(len(have.get(c, [])) for c in cells)
        target = min(n + policy.batch, policy.cap)
        for cell in cells:
            seeds = sorted(set(have.get(cell, [])) | set(plan.get(cell, [])))
            nxt = max(seeds, default=-1) + 1
            while len(seeds) < target:
                seeds.append(nxt)
                plan.setdefault(cell, []).append(nxt)
                nxt += 1
    return {cell: sorted(set(s)) for cell, s in plan.items()}
