"""A row names the code its process imported, not the checkout as it is when the row is
written: commits that land while a run trains do not relabel it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import subprocess
from experiments.run import store

def commit(message):
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", message], check=True)
    return subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()

later = commit("lands while the run trains")
row = store.provenance()
print(row["git_sha"], later, row["git_dirty"])
"""

DIRTY = """
from experiments.run import store
print(store.provenance()["git_dirty"])
"""


def test_provenance_names_the_commit_the_process_started_on(tmp_path):
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=tmp_path, env=env, capture_output=True, text=True)
        return out.stdout.strip()

    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "table.csv").write_text("a\n")
    (tmp_path / "model.py").write_text("x = 1\n")
    git("add", ".")
    git("commit", "-q", "-m", "the code the run starts on")
    started = git("rev-parse", "--short=12", "HEAD")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    recorded, later, dirty = out.stdout.split()
    assert later != started
    assert recorded == started
    assert dirty == "False"

    def dirty() -> str:
        out = subprocess.run(
            [sys.executable, "-c", DIRTY], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.strip()

    (tmp_path / "results" / "table.csv").write_text("a\n1\n")  # a grid's export: not code
    assert dirty() == "False"
    (tmp_path / "model.py").write_text("x = 2\n")  # the code changed
    assert dirty() == "True"
