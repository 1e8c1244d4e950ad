"""Build ``results/REPORT.md`` with figures, and render the notebooks to HTML.

Why a generated Markdown report: it is the diffable, reviewable view of the results that
lives next to the tables in git; the notebooks are the interactive view of the same numbers
(both call ``experiments.analysis.stats``). The report holds no timestamps or machine paths, so
rebuilding it from unchanged tables changes nothing.

    python -m experiments report [--results results] [--profile quick] [--no-notebooks]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

from experiments.analysis import (
    budget_bias,
    budget_extrapolation,
    compute,
    longest_budget,
    looks,
    noise,
    projection,
    stopping_error,
)
from experiments.analysis import claims as cl
from experiments.analysis import figures as fg
from experiments.analysis import stats as an
from experiments.analysis.calibration_tables import spread_lines
from experiments.analysis.claims import ALPHA
from experiments.analysis.markdown import markdown_table
from experiments.analysis.sweep_report import sweeps_section
from experiments.config.toplevel import load_profile_defaults
from experiments.run.seeds import SeedPolicy

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
PAPER_NOTEBOOK = "01_paper"  # executed once per paper, with its ``paper`` parameter


NOT_PAPERS = {"sweeps", "calibration"}


def paper_names(ablations: Path = ROOT / "ablations") -> list[str]:
    """The papers: the folders under ``ablations/`` that hold grid YAMLs (not ``sweeps/`` or
    ``calibration/``, which serve every paper)."""
    if not Path(ablations).is_dir():
        return []
    return sorted(
        d.name
        for d in Path(ablations).iterdir()
        if d.is_dir() and d.name not in NOT_PAPERS and any(d.glob("*.yaml"))
    )


def notebook_runs(notebooks_dir: Path = NOTEBOOKS) -> list[tuple[Path, str, dict]]:
    """(notebook, name of its rendering, extra parameters): the paper notebook once per paper."""
    runs = []
    for path in sorted(Path(notebooks_dir).glob("*.ipynb")):
        if path.stem == PAPER_NOTEBOOK:
            runs += [(path, f"{path.stem}_{p}", {"paper": p}) for p in paper_names()]
        else:
            runs.append((path, path.stem, {}))
    return runs


METHODS = (
    "**Confirmatory (the claims table).** Each paper's claims are one family. A directional "
    "claim is tested by a two-sided paired t-test (pairs: runs of the two cells with the same "
    "seed), a claim of no difference (≈ ±margin) by TOST with the margin its spec states "
    "(default 0.5 pp), a claim that a cell is at least as good as another (≥ −margin: "
    "'keeps the accuracy', 'comes close to') by the one-sided non-inferiority test against "
    "−margin. "
    "Holm's step-down procedure runs across the paper's claims at α = 0.05 (the family counts "
    "every claim the paper's specs make, run or not); *p (raw)* is the test's own p, *p (Holm, "
    "paper)* the adjusted one. Each interval is drawn at the level Holm used for that claim "
    "(shown as *CI level*; for claims of no difference and of not worse the TOST-style "
    "interval, 1 − 2α_i, whose lower end is the one-sided bound; for a directional claim "
    "found *equivalent*, the same 1 − 2α_i interval, which its verdict reads), so the "
    "interval shown always gives the verdict: it excludes 0 for *agrees* / *disagrees*, lies "
    "inside ±margin for *equivalent*, and holds 0 and crosses a margin for *inconclusive*. "
    "*agrees* / *disagrees*: the difference test rejects on the claimed / the other side; "
    "*equivalent*: the adjusted TOST interval lies inside ±margin (for a directional claim this means the claimed effect is "
    "smaller than the margin); a claim of no difference *disagrees* when that interval lies "
    "wholly beyond the margin; a not-worse claim *agrees* when its interval lies above "
    "−margin and *disagrees* when it lies wholly below; otherwise *inconclusive*. *claim "
    "holds* says whether the "
    "verdict supports the paper. "
    "**Seeds (the stopping rule).** A grid runs its claim cells first, on the spec's seeds "
    "(3). Under a profile with `seeds: {batch, cap}` (quick: 6 and 48; 3 and 12 until "
    "2026-12-04, 6 and 24 until 2026-12-05; a campaign replays the present schedule, 3, 9, 15, "
    "21, 27, ..., 45, 48, on the seeds it has, so a claim open at 12 seeds was next looked at "
    "after 15, 21 and 24, and one open at 24 after 27, 33, 39, 45 and 48) each claim "
    "that is "
    "*inconclusive* and whose adjusted interval is at least its margin wide gets `batch` more "
    "seeds on both its cells, round after round, until it is decided, its interval is narrower "
    "than its margin, or its cells reach `cap` seeds; the rule reads verdicts and interval "
    "widths, never which way an estimate leans (`experiments/run/seeds.py`). A resumed "
    "campaign replays the schedule on the seeds it planned, look by look, so a round that was "
    "interrupted is finished before its claim is read again, and a round whose worker died "
    "is finished before the next is planned (a verdict never rests on where a run was "
    "killed). *n* is the seeds a claim used: those of its grid's last complete look, the "
    "present schedule replayed over the paper's grids together on the runs that finished "
    "(`experiments/analysis/looks.py`); the runs of a round still running, or that an earlier "
    "schedule ran past that look, are listed under *Runs beyond the last complete look* and "
    "not read. "
    "**Exploratory (the cell tables).** Mean ± 95% Student-t interval over seeds, ok runs "
    "only; Δ is the difference to the grid's baseline, paired by seed, with its unadjusted 95% "
    "t-interval; p is a paired t-test (Wilcoxon signed-rank from 6 pairs on), Holm-corrected "
    "across the cells of one grid. P(improve) is the share of seeds on which the cell beats the "
    "baseline (ties count 1/2). Paper numbers are ImageNet top-1 from "
    "`reference/paper_results.csv`: compare directions, not levels."
)


def _link(path: Path, base: Path, alt: str) -> str:
    return f"![{alt}]({path.relative_to(base).as_posix()})"


def tuned_by(grid: str, ablations: Path = ROOT / "ablations") -> str | None:
    """The sweep a grid's spec names (``sweep:``): its cells ran at their tuned values."""
    import yaml

    path = ablations / f"{grid}.yaml"
    if not path.is_file():
        return None
    raw = yaml.safe_load(path.read_text()) or {}
    return raw.get("sweep") if isinstance(raw, dict) else None


def _grid_section(
    results: pd.DataFrame,
    epochs: pd.DataFrame,
    grid: str,
    profile: str,
    results_dir: Path,
    claims: pd.DataFrame,
    paper_results: pd.DataFrame,
    metric: str,
    figures: bool,
) -> list[str]:
    rows = results[(results["grid"] == grid) & (results["profile"] == profile)]
    summary = an.summary_table(rows, metric, claims=claims, paper_results=paper_results)
    title = f"### {grid} · profile {profile}" if profile else f"### {grid}"
    lines = [title, ""]
    sweep = tuned_by(grid)
    if sweep:
        lines += [
            f"Each cell ran at its own tuned values: sweep `{sweep}` "
            f"(`ablations/sweeps/{sweep}.yaml`) tuned every cell with an equal budget first; the "
            "tuned keys are config columns of the grid's results table.",
            "",
        ]
    lines += [markdown_table(an.format_summary(summary, metric)), ""]
    lost = rows[rows["status"] != "ok"]
    for r in lost.itertuples():
        detail = f" at epoch {int(float(r.diverged_epoch))}" if r.status == "diverged" else ""
        error = f": {r.error}" if r.error else ""
        lines.append(f"- run `{r.run_id}` ({r.cell}, seed {r.seed}) {r.status}{detail}{error}")
    if len(lost):
        lines.append("")
    if "shared_from" in rows:
        shared = rows[rows["shared_from"].fillna("").astype(str) != ""]
        for (cell, source), g in shared.groupby(["cell", "shared_from"], sort=False):
            lines.append(
                f"- cell {cell}: {len(g)} run(s) shared with {source}, which trained them "
                "(same resolved configuration and seed)"
            )
        if len(shared):
            lines.append("")
    if figures:
        paper = grid.split("/")[0]
        made = fg.grid_figures(
            rows, epochs, grid, results_dir / "figures" / paper, profile=profile, metric=metric
        )
        lines.append(" ".join(_link(paths[0], results_dir, kind) for kind, paths in made.items()))
        lines.append("")
    return lines


def _profile_defaults() -> dict:
    """ablations/profiles.yaml: the shared profiles and their seed schedules."""
    return load_profile_defaults(ROOT / "ablations" / "profiles.yaml")


# the seed schedules (first seeds, batch, cap) a profile ran before its present one, oldest first,
# with the day each ended: a claim still open at an old cap was looked at under every schedule
# since (the union of their looks: a campaign replays the new schedule on the seeds it has)
EARLIER_SCHEDULES = {"quick": [((3, 3, 12), "2026-12-04"), ((3, 6, 24), "2026-12-05")]}


def carried_looks(earlier: list[tuple[int, int, int]], now: list[int]) -> list[int]:
    """The looks of a claim open at the cap of the first of ``earlier`` schedules and carried
    through the rest into the present one (``now``)."""
    looks = set(now)
    for first, batch, cap in earlier:
        looks |= set(stopping_error.schedule_looks(first, batch, cap))
    return sorted(looks)


def _looks_paragraph(claims: pd.DataFrame) -> list[str]:
    """The false-decision rate of each adaptive seed schedule, simulated (stopping_error)."""
    out = []
    sizes = claims.groupby("paper").size()
    for profile, layer in _profile_defaults().items():
        seeds = (layer or {}).get("seeds")
        if not seeds or not seeds.get("cap") or sizes.empty:
            continue
        policy = SeedPolicy(**seeds)
        first = 3  # the seeds every paper grid starts with (its spec's ``seeds: 3``)
        m = int(sizes.max())
        level = ALPHA / m

        def rate(looks: list[int], at: float = level) -> float:
            return stopping_error.false_decision_rate(at, looks=looks)

        looks = stopping_error.schedule_looks(first, policy.batch, policy.cap)
        now = rate(looks)
        text = (
            f"**Looking again (simulated, profile {profile}).** The schedule tests a claim after "
            f"{', '.join(map(str, looks))} seeds and stops once it is decided, so a claim with "
            "no effect is called *agrees* or *disagrees* more often than its Holm level says. "
            "Over 20,000 simulated no-effect claims (sd of paired differences 0.5 pp, margin "
            f"0.5 pp), the first Holm step of the largest family ({m} claims, level "
            f"{level:.4f}) decides {100 * now:.2f}% of them ({now / level:.1f}× the level), and a "
            f"level of {ALPHA} decides {100 * rate(looks, ALPHA):.1f}%."
        )
        earlier = EARLIER_SCHEDULES.get(profile, [])
        for i, ((first_, batch, cap), until) in enumerate(earlier):
            old = stopping_error.schedule_looks(first_, batch, cap)
            carried = carried_looks([s for s, _ in earlier[i:]], looks)
            text += (
                f" Under the schedule of batch {batch} and cap {cap} (until {until}: looks after "
                f"{', '.join(map(str, old))}) the first figure was {rate(old) / level:.1f}×; a "
                f"claim open at its cap is looked at after {', '.join(map(str, carried))}: "
                f"{rate(carried) / level:.1f}×."
            )
        text += (
            " The verdicts here are read at the Holm level with no correction for the looks "
            "(`experiments/analysis/stopping_error.py`)."
        )
        out += [text, ""]
    return out


def _adaptive_profiles() -> list[str]:
    """The profiles whose seeds a schedule adds by precision (``seeds: {cap}``)."""
    defaults = _profile_defaults().items()
    return [prof for prof, layer in defaults if ((layer or {}).get("seeds") or {}).get("cap")]


def _target_section(verdicts: pd.DataFrame, results: pd.DataFrame) -> list[str]:
    """The floor of the present protocol's compute, set against the campaign's target."""
    adaptive = _adaptive_profiles()
    mine = verdicts[verdicts["profile"].isin(adaptive)]
    table = projection.target_cost(mine, results, compute.TARGET_MACHINE_HOURS)
    if table.empty:
        return []
    shown = table.astype(object).where(table.notna(), "out of reach")
    return [
        f"### What would the {compute.TARGET_MACHINE_HOURS * 60:.0f}-minute target take?",
        "",
        "The compute above includes the rounds the seed schedule spends finding out how many "
        "seeds a claim needs. Its floor: every claim run once at the seeds it needs, known in "
        "advance (the smallest n at which its interval at its final Holm level would decide it, "
        "with its observed mean and sd of paired differences; at least the first look's 3), a "
        "cell shared by claims or grids counted once, at its grid's median run time. *hours at "
        "3 seeds a cell* is what the claim cells cost with no noise at all. *runs x cheaper* "
        "is how much faster a run would have to be to decide every claim within the target at "
        "these seeds, *sd x* how far every sd of paired differences would have to fall at "
        "today's run time (*out of reach* where the noise-free floor already misses it), and "
        "*hours at margin 1 pp* the floor with every claim's margin widened to 1 pp. Run "
        "times are those the tables recorded, on the hosts and code of their day.",
        "",
        markdown_table(shown),
        "",
    ]


def _open_claims_section(verdicts: pd.DataFrame, results: pd.DataFrame) -> list[str]:
    """What deciding the still-inconclusive claims would cost, for the owner of the seed cap."""
    adaptive = _adaptive_profiles()
    projected = projection.project_open_claims(verdicts[verdicts["profile"].isin(adaptive)])
    if projected.empty:
        return []
    table = projected.assign(
        delta=projected["delta"].map(lambda v: f"{v:+.2f}"),
        sd=projected["sd"].map(lambda v: f"{v:.2f}"),
        projected_n=projected["projected_n"].map(
            lambda v: f"{v:.0f}" if np.isfinite(v) else f"> {projection.N_MAX}"
        ),
    )[["grid", "profile", "claim", "n", "delta", "sd", "projected_n"]]
    table.columns = ["grid", "profile", "claim", "n", "Δ (pp)", "sd of paired Δ",
                     "projected seeds"]  # fmt: skip
    return [
        "## What would deciding the open claims cost?",
        "",
        "For each *inconclusive* claim of a profile with a seed schedule: the seeds at which its Holm-level interval would decide "
        "it if the mean and sd of its paired differences stayed as observed and its Holm level "
        "stayed where it is (a projection: the mean moves with more seeds, and the level only "
        "rises as other claims are decided). The seed schedule adds seeds round by round up to "
        "the profile's cap; a claim projected beyond the cap stays open there. The second table "
        "is the cost of the projected seeds at each grid's median run time (a cell shared by several claims runs to the largest n any of "
        "them needs). Every round is another look at the data, another chance to stop on a "
        "chance verdict (*Looking again*, above).",
        "",
        markdown_table(table),
        "",
        markdown_table(projection.cost_to_decide(projected, results)),
        "",
    ]


def _beyond_looks_section(every_row: pd.DataFrame, at_looks: pd.DataFrame) -> list[str]:
    """The finished runs the claims do not read yet: rounds past each grid's last look."""
    beyond = looks.beyond_last_looks(every_row, at_looks)
    if beyond.empty:
        return []
    table = (
        beyond.assign(seed=beyond["seed"].astype(int))
        .groupby(["grid", "profile", "cell"], sort=True)["seed"]
        .agg(runs="size", seeds=lambda s: ", ".join(map(str, sorted(s))))
        .reset_index()
    )
    return [
        "## Runs beyond the last complete look",
        "",
        "A seed schedule looks at a claim only where its rounds stop. These runs are in the "
        "tables but no claim reads them yet: a round still running or interrupted (the campaign "
        "finishes it), a round an earlier schedule ran past the present schedule's last "
        "complete look (read when the present schedule's round there completes), or seeds "
        "fixed by hand (`SEEDS=n`) past it. Every verdict "
        "above is read at the last look whose runs have all finished, so it does not depend on "
        "when the tables were read.",
        "",
        markdown_table(table),
        "",
    ]


def _noise_section(results_dir: Path, results: pd.DataFrame, verdicts: pd.DataFrame) -> list[str]:
    """Where a claim's seed noise comes from (``experiments.analysis.noise``)."""
    path = results_dir / "noise" / "summary.csv"
    spread = spread_lines(results, verdicts)
    if not path.is_file() and not spread:
        return []
    lines = ["## Where does the seed noise come from?", ""]
    if path.is_file():
        summary = pd.read_csv(path)
        sentence = noise.sampling_sentence(summary)
        lines += [
            "A claim's paired difference varies from seed to seed, and the seeds it needs "
            "grow with that variance. Part of it is the finite test split (which of its 10,000 "
            "images a network happens to get right), the rest is the network itself (how good "
            "a seed's training made it). `python -m experiments.tools.test_set_noise` replays "
            "the final checkpoints of a grid's runs (each reproduces its committed test top-1 "
            "exactly), records which test images and which of 20,000 never-used training "
            "images each gets right, and fits the variance of the paired difference over N "
            "evaluation images, var(N) = s² + c/N. *Of it, test sampling* is sqrt(c/10,000), "
            "from the per-image variance; the fitted c agrees with it (images behave "
            "independently). *64k* is the test split plus all 54,000 training images the "
            "quick profile leaves unused; its compute multiplies the seeds it would need by "
            "the cost of 5.4 more test passes a run. *Precise* BN statistics are recomputed "
            "over the run's 5,000 training images before testing.",
            "",
            *([sentence, ""] if sentence else []),
            markdown_table(noise.summary_table(summary)),
            "",
        ]
    lines += spread
    return lines


def build_report(
    results_dir: str | Path = "results",
    *,
    profile: str | None = None,
    metric: str = "test_top1",
    figures: bool = True,
    ablations: Path = ROOT / "ablations",
) -> Path:
    """Write ``<results_dir>/REPORT.md`` (and figures under ``<results_dir>/figures``).

    Claims and the grid sections read each grid at its last complete look
    (``experiments.analysis.looks``); compute and budget read every finished run."""
    matplotlib.use("Agg")
    results_dir = Path(results_dir)
    every_row = an.load_results(results_dir, profile=profile)
    epochs = an.load_epochs(results_dir, results=every_row)
    reference = an.reference_dir(results_dir)
    claims = an.load_claims(ablations)
    paper_results = an.load_paper_results(reference / "paper_results.csv")
    results = looks.at_last_looks(every_row, claims, ablations, metric)
    checked = cl.check_claims(results, claims, paper_results, metric)
    # the papers' claims; the repository's own (calibration/: a precision, a budget) apart
    own = checked["paper"].isin(NOT_PAPERS)
    verdicts = checked[~own]
    own_verdicts = checked[own & (checked["verdict"] != "not run")]  # no profile it never ran at

    lines = ["# Ablation results", ""]
    lines += [
        "Generated by `python -m experiments report` from the tables in this folder "
        f"(profile: {profile or 'all'}). Do not edit by hand; rerun it.",
        "",
        METHODS,
        "",
        *_looks_paragraph(claims[~claims["paper"].isin(NOT_PAPERS)]),
        "## Did each paper's claim hold here?",
        "",
        markdown_table(cl.format_claims(verdicts)),
        "",
    ]
    if figures and (verdicts["verdict"] != "not run").any():
        paths = fg.save(fg.plot_claims(verdicts), results_dir / "figures", "claims")
        lines += [_link(paths[0], results_dir, "claims"), ""]
    if len(own_verdicts):
        lines += [
            "## Did the repository's own choices hold?",
            "",
            "Claims the calibration grids make about this repository's options (one family, "
            "the same tests and Holm correction as a paper's claims): a run is only worth its "
            "speed-up if it trains to the same accuracy.",
            "",
            markdown_table(
                cl.format_claims(own_verdicts)
                .drop(columns=["paper: Δ (pp)"])
                .rename(columns={"p (Holm, paper)": "p (Holm, family)"})
            ),
            "",
        ]
    lines += _beyond_looks_section(every_row, results)
    lines += budget_bias.budget_lines(
        epochs, every_row, results_dir=results_dir if figures else None
    )
    lines += longest_budget.longest_budget_lines(every_row, verdicts, claims)
    lines += budget_extrapolation.extrapolation_lines(every_row)
    lines += _noise_section(results_dir, every_row, checked)
    cost = compute.campaign_compute(every_row)
    if len(cost):
        lines += [
            "## Compute",
            "",
            "Distinct finished runs per profile and paper (a run shared between grids counts "
            "once, under the paper whose grid trained it) and the time their trainings took, set-up, validation and test included; "
            "*repeat trainings* are runs trained again in another grid instead of taken from "
            "its table (campaigns before the workers looked the tables up), whose time counts "
            "too; core-hours "
            f"multiply by each run's threads (blank where an older table did not record them); "
            f"machine hours divide them by {compute.MACHINE_CORES} cores, and the last "
            "column sets them beside the campaign's target: every claim of a paper decided in "
            f"{compute.TARGET_MACHINE_HOURS * 60:.0f} minutes of a {compute.MACHINE_CORES}-core "
            "machine.",
            "",
            markdown_table(cost.astype(object).where(cost.notna(), "")),
            "",
        ]
    lines += _target_section(verdicts, every_row)
    lines += _open_claims_section(verdicts, every_row)

    known = paper_names()
    papers = known + sorted(set(results["paper"]) - set(known))
    for paper in papers:
        grids = an.planned_grids(paper, results, claims, ablations)
        if not grids:
            continue
        lines += [f"## {paper}", ""]
        for grid in grids:
            profiles = list(dict.fromkeys(results.loc[results["grid"] == grid, "profile"]))
            if not profiles:
                lines += [f"### {grid}", "", "not run yet", ""]
            for prof in profiles:
                lines += _grid_section(
                    results, epochs, grid, prof, results_dir, claims, paper_results, metric, figures
                )

    lines += sweeps_section(results_dir, figures)

    report = results_dir / "REPORT.md"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return report


def _scrub(text: str) -> str:
    """Replace this machine's paths (repo, interpreter, home) in rendered output."""
    for path, name in sorted(
        [(str(ROOT), "."), (sys.prefix, "<python>"), (str(Path.home()), "~")],
        key=lambda item: -len(item[0]),
    ):
        if len(path) > 1:
            text = text.replace(path, name)
    return text


def run_notebooks(
    results_dir: str | Path = "results",
    *,
    html_dir: str | Path | None = None,
    profile: str | None = "quick",
    names: list[str] | None = None,
    notebooks_dir: str | Path = NOTEBOOKS,
    timeout: int = 600,
) -> dict[str, str | None]:
    """Execute notebooks with papermill against ``results_dir``; write HTML; name -> error.

    Notebooks run with their own folder as working directory and get ``results_dir`` as a
    path relative to it, so no absolute path of this machine enters the rendered HTML.
    """
    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter

    notebooks_dir = Path(notebooks_dir).resolve()
    results_dir = Path(results_dir).resolve()
    html_dir = Path(html_dir) if html_dir is not None else results_dir / "html"
    html_dir.mkdir(parents=True, exist_ok=True)
    relative = os.path.relpath(results_dir, notebooks_dir)
    runs = notebook_runs(notebooks_dir)
    if names is not None:
        runs = [r for r in runs if r[0].stem in names or r[1] in names]
    failures: dict[str, str | None] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for path, name, extra in runs:
            executed = Path(tmp) / f"{name}.ipynb"
            error = None
            try:
                pm.execute_notebook(
                    str(path),
                    str(executed),
                    parameters={"results_dir": relative, "profile": profile, **extra},
                    cwd=str(notebooks_dir),
                    kernel_name="python3",
                    progress_bar=False,
                    execution_timeout=timeout,
                )
            except Exception as exc:  # papermill still wrote the notebook with the traceback
                error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            if executed.exists():
                node = nbformat.read(executed, as_version=4)
                body, _ = HTMLExporter().from_notebook_node(
                    node, resources={"metadata": {"name": name}}
                )
                (html_dir / f"{name}.html").write_text(_scrub(body), encoding="utf-8")
            failures[name] = error
    return failures


def main(argv: list[str] | None = None) -> int:
    """Command line: build REPORT.md and figures; execute and render notebooks unless told not."""
    parser = argparse.ArgumentParser(
        prog="python -m experiments report",
        description="Summarise every results table: statistics, paper claims, figures, "
        "REPORT.md, and the notebooks rendered to HTML.",
    )
    parser.add_argument("--results", default="results", help="results folder (default: results)")
    parser.add_argument(
        "--profile",
        default=None,
        help="only runs of this profile (smoke, pilot, quick, paper); default: all, each apart",
    )
    parser.add_argument(
        "--metric", default="test_top1", help="accuracy column (default: test_top1)"
    )
    parser.add_argument("--no-notebooks", action="store_true", help="skip executing notebooks")
    parser.add_argument("--no-figures", action="store_true", help="skip writing figures")
    args = parser.parse_args(argv)

    report = build_report(
        args.results, profile=args.profile, metric=args.metric, figures=not args.no_figures
    )
    print(f"wrote {report}")
    if args.no_notebooks:
        return 0
    failures = run_notebooks(args.results, profile=args.profile)
    for name, error in failures.items():
        print(f"notebook {name}: {'ok' if error is None else 'FAILED: ' + error}")
    print(f"wrote HTML under {Path(args.results) / 'html'}")
    return 1 if any(failures.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
