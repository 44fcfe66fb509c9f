"""The students' exercise notebooks run end to end, failing only where a stub awaits their code.

Each ``exercises/*.ipynb`` is executed in a fresh kernel under the smoke profile with
errors allowed; every error it raises must be the ``NotImplementedError`` of a stub.
Any other error (a ``NameError`` in a later cell that needs a stub's result, a broken
import, ...) means the student would meet a failure that is not theirs to fix.
The grader's check (solutions get full marks, exercises zero) is in test_grading.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = sorted((ROOT / "exercises").glob("*.ipynb"))


def test_there_are_exercise_notebooks():
    assert EXERCISES, "no notebooks in exercises/"


def _errors(nb) -> list[tuple[int, str, str]]:
    found = []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                found.append((index, output.get("ename", "?"), output.get("evalue", "")))
    return found


@pytest.mark.notebooks
@pytest.mark.parametrize("path", EXERCISES, ids=[p.stem for p in EXERCISES])
def test_exercise_notebook_fails_only_at_its_stubs(path, monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", os.environ.get("COURSE_PROFILE", "smoke"))
    monkeypatch.setenv("COURSE_STATIC_FIGURES", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    others = [(i, name, value) for i, name, value in _errors(nb) if name != "NotImplementedError"]
    assert not others, f"{path.name}: errors other than NotImplementedError: " + "; ".join(
        f"cell {i}: {name}: {value}" for i, name, value in others
    )
