"""Generating exercise notebooks from solutions notebooks (course_lib.grading.release)."""

from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from course_lib.grading import grader, release, sandbox

SOLVED = """import torch

def linear_betas(num_timesteps, beta_start=1e-4, beta_end=0.02):
    \"\"\"Evenly spaced betas.\"\"\"
    # BEGIN SOLUTION
    betas = torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
    return betas
    # END SOLUTION"""


def solution_notebook() -> nbformat.NotebookNode:
    nb = new_notebook(metadata={"course": {"chapter": "04_forward_diffusion", "kind": "solutions"}})
    graded = new_code_cell(SOLVED, metadata={"tags": ["graded"]}, execution_count=3)
    graded.outputs = [new_output("stream", name="stdout", text="hello\n")]
    graded.metadata["execution"] = {"iopub.status.busy": "2024-01-01"}
    top_level = new_code_cell("# BEGIN SOLUTION\nanswer = 42\n# END SOLUTION", metadata={"tags": ["graded"]})
    answer = new_markdown_cell(
        "Why cumulative?\n\n<!-- BEGIN ANSWER -->\nBecause q(x_t|x_0) multiplies every step.\n<!-- END ANSWER -->",
        metadata={"tags": ["answer"]},
    )
    plain = new_code_cell("x = 1", execution_count=1)
    nb.cells = [new_markdown_cell("# Chapter 4"), graded, top_level, answer, plain]
    return nb


def test_make_exercise_replaces_regions_and_strips_outputs():
    solution = solution_notebook()
    before = nbformat.writes(solution)
    exercise = release.make_exercise(solution)
    assert nbformat.writes(solution) == before  # the solution is left alone
    assert exercise.metadata["course"] == {"chapter": "04_forward_diffusion", "kind": "exercises"}
    assert [c.id for c in exercise.cells] == [c.id for c in solution.cells]
    graded, top_level, answer, plain = exercise.cells[1:]
    assert graded.source.endswith(
        '    """Evenly spaced betas."""\n'
        '    raise NotImplementedError("exercise linear_betas: replace this line with your solution")'
    )
    assert "linspace" not in graded.source and "SOLUTION" not in graded.source
    assert top_level.source == 'raise NotImplementedError("exercise: write your solution here")'
    assert graded.metadata == {"tags": ["graded"]}
    assert answer.metadata["tags"] == ["answer"]
    assert answer.source == (
        "Why cumulative?\n\n<!-- BEGIN ANSWER -->\n*Write your answer here.*\n<!-- END ANSWER -->"
    )
    assert all(c.outputs == [] and c.execution_count is None for c in exercise.cells if c.cell_type == "code")
    nbformat.validate(exercise)


@pytest.mark.parametrize(
    "source, tags, message",
    [
        ("# BEGIN SOLUTION\nx = 1", ["graded"], "never closed"),
        ("x = 1\n# END SOLUTION", ["graded"], "without BEGIN"),
        ("# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION", ["graded"], "inside another"),
        ("# BEGIN SOLUTION\nx = 1\n# END SOLUTION", [], "not tagged 'graded'"),
        ("if True:\n# BEGIN SOLUTION\n    pass\n# END SOLUTION", ["graded"], "does not compile"),
    ],
)
def test_malformed_markers_are_errors(source, tags, message):
    nb = new_notebook(cells=[new_code_cell(source, metadata={"tags": tags})])
    with pytest.raises(release.ReleaseError, match=message):
        release.make_exercise(nb)


def test_cli_writes_a_stable_exercise_and_check_detects_drift(tmp_path, capsys):
    solution, exercise = tmp_path / "solutions" / "04_forward_diffusion.ipynb", tmp_path / "ex.ipynb"
    solution.parent.mkdir()
    nbformat.write(solution_notebook(), solution)
    assert release.main([str(solution), str(exercise)]) == 0
    first = exercise.read_text()
    assert release.main([str(solution), str(exercise)]) == 0
    assert exercise.read_text() == first  # regeneration is byte-for-byte stable
    assert release.main([str(solution), str(exercise), "--check"]) == 0
    exercise.write_text(first.replace("Write your answer here", "Something else"))
    capsys.readouterr()
    assert release.main([str(solution), str(exercise), "--check"]) == 1
    assert "out of date" in capsys.readouterr().err


def test_ids_are_deterministic_when_the_solution_has_none(tmp_path):
    nb = solution_notebook()
    nb.nbformat_minor = 4
    for cell in nb.cells:
        del cell["id"]
    path = tmp_path / "old.ipynb"
    path.write_text(nbformat.writes(nb, version=nbformat.NO_CONVERT), encoding="utf-8")
    assert release.exercise_text(path) == release.exercise_text(path)


def test_solution_gets_full_marks_and_its_exercise_zero(tmp_path):
    nb = solution_notebook()
    nb.cells[1].source = nb.cells[1].source.replace("import torch", "import math, torch")
    nb.cells[1].source += (
        "\n\ndef cosine_betas(num_timesteps, s=0.008, max_beta=0.999):\n"
        "    # BEGIN SOLUTION\n"
        "    u = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps\n"
        "    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2\n"
        "    return torch.clamp(1 - f[1:] / f[:-1], max=max_beta)\n"
        "    # END SOLUTION"
    )
    solution = tmp_path / "solution.ipynb"
    nbformat.write(nb, solution)
    exercise = tmp_path / "exercise.ipynb"
    exercise.write_text(release.exercise_text(solution), encoding="utf-8")
    limits = sandbox.Limits(timeout_s=60)
    solved = {q.name: q.points for q in grader.grade_notebook(solution, limits=limits).questions}
    stubbed = grader.grade_notebook(exercise, limits=limits)
    assert solved["linear_betas"] == 1 and solved["cosine_betas"] == 2
    assert stubbed.total == 0
