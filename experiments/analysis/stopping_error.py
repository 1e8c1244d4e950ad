"""How often the seed schedule decides a claim that has no effect: the cost of looking again.

Why: the schedule (``experiments.run.seeds``) tests a claim after its first seeds and again
after every batch it adds, and stops as soon as the claim is decided. Each look is another
chance to cross the Holm level by luck, so a claim with no true effect is called *agrees* or
*disagrees* more often than the level says. This module measures that rate by simulation,
for a schedule (first seeds, batch, cap) and a per-claim level, so the report can state it
next to the level it uses.

The simulated claim is a difference claim whose paired differences are normal with mean 0;
it runs the schedule's rules exactly: stop when the two-sided test rejects (a false verdict),
when the ``1 - 2 level`` interval lies inside ±margin (equivalent), when the interval is
narrower than the margin (precise), or at the cap.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def schedule_looks(first: int, batch: int, cap: int) -> list[int]:
    """The seed counts at which the schedule tests a claim: ``first``, then ``batch`` more per
    round, the last round stopping at ``cap`` (``experiments.run.seeds.next_seeds``)."""
    looks = [first]
    while looks[-1] < cap:
        looks.append(min(looks[-1] + batch, cap))
    return looks


def false_decision_rate(
    level: float,
    *,
    first: int = 3,
    batch: int = 3,
    cap: int = 12,
    looks: list[int] | None = None,
    sd: float = 0.5,
    margin: float = 0.5,
    reps: int = 20_000,
    seed: int = 0,
) -> float:
    """Share of simulated no-effect claims the schedule calls agrees or disagrees; ``looks``
    (seed counts) replaces the schedule ``first``/``batch``/``cap`` describes."""
    rng = np.random.default_rng(seed)
    looks = looks or schedule_looks(first, batch, cap)
    diffs = rng.normal(0.0, sd, size=(reps, looks[-1]))
    live = np.ones(reps, dtype=bool)
    wrong = np.zeros(reps, dtype=bool)
    for n in looks:
        d = diffs[:, :n]
        mean, se = d.mean(axis=1), d.std(axis=1, ddof=1) / np.sqrt(n)
        reject = live & (2 * stats.t.sf(np.abs(mean) / se, n - 1) < level)
        wrong |= reject
        half = stats.t.ppf(1 - level, n - 1) * se
        equivalent = (mean - half > -margin) & (mean + half < margin)
        live &= ~reject & ~equivalent & ~(2 * half < margin)
    return float(wrong.mean())
