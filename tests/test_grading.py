"""The autograder: scores, feedback, isolation, and the command line's failure modes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from course_lib.grading import cli, grader, release, sandbox, spec

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "04_forward_diffusion"
FAST = sandbox.Limits(timeout_s=60)

IMPORTS = "import math\nimport numpy as np\nimport torch"
LINEAR = """def linear_betas(num_timesteps, beta_start=1e-4, beta_end=0.02):
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)"""
COSINE = """def cosine_betas(num_timesteps, s=0.008, max_beta=0.999):
    u = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return torch.clamp(1 - f[1:] / f[:-1], max=max_beta)"""
Q_SAMPLE = """def q_sample(x0, t, alphas_cumprod, noise):
    ab = alphas_cumprod[t].view(-1, *([1] * (x0.ndim - 1)))
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise"""
SNR_DB = """def snr_db(alphas_cumprod):
    return 10 * torch.log10(alphas_cumprod / (1 - alphas_cumprod))"""
BELOW = """def first_step_below(alphas_cumprod, threshold_db):
    below = torch.nonzero(snr_db(alphas_cumprod) < threshold_db)
    return int(below[0]) if len(below) else len(alphas_cumprod)"""
ALL = (IMPORTS, LINEAR, COSINE, Q_SAMPLE, SNR_DB, BELOW)
NAMES = ("linear_betas", "cosine_betas", "q_sample", "snr_db", "first_step_below")
MAX_POINTS = 8.0


def write_notebook(path: Path, *sources: str, chapter: str | None = CHAPTER) -> Path:
    metadata = {"course": {"chapter": chapter, "kind": "exercises"}} if chapter else {}
    nb = new_notebook(metadata=metadata)
    nb.cells = [new_markdown_cell("# Exercises")] + [new_code_cell(s) for s in sources]
    nbformat.write(nb, path)
    return path


def points(report: grader.GradeReport) -> dict[str, float]:
    return {q.name: q.points for q in report.questions}


def feedback(report: grader.GradeReport, name: str) -> str:
    return next(q.feedback for q in report.questions if q.name == name)


def test_correct_notebook_gets_full_marks_and_magics_are_ignored(tmp_path, capsys):
    path = write_notebook(
        tmp_path / "good.ipynb", "%matplotlib inline\n!pip install nothing", "%%time\nwarm = 1", *ALL
    )
    out_json = tmp_path / "result.json"
    assert cli.main([str(path), "--json", str(out_json), "--timeout", "60"]) == 0
    table = capsys.readouterr().out
    assert "total: 8 / 8" in table
    result = json.loads(out_json.read_text())
    assert result["chapter"] == CHAPTER
    assert result["total"] == result["max_total"] == MAX_POINTS
    assert result["isolation"] == "subprocess+rlimits"
    assert result["cell_errors"] == []
    assert all(q["feedback"].startswith("all ") for q in result["questions"])


def test_wrong_answers_get_actionable_feedback(tmp_path):
    path = write_notebook(
        tmp_path / "partial.ipynb",
        IMPORTS,
        LINEAR.replace("torch.float64", "torch.float32"),
        COSINE.replace("f[1:] / f[:-1]", "f / f[0]"),  # T + 1 values
        "def q_sample(x0, t, alphas_cumprod, noise):\n    return (x0 + noise).tolist()",
        BELOW,  # snr_db missing
    )
    report = grader.grade_notebook(path, limits=FAST)
    assert report.total == 0
    assert "wrong dtype: expected float64, got float32" in feedback(report, "linear_betas")
    assert "wrong shape: expected (1000,), got (1001,)" in feedback(report, "cosine_betas")
    assert "wrong return type" in feedback(report, "q_sample") and "list" in feedback(report, "q_sample")
    assert "no function named snr_db" in feedback(report, "snr_db")
    assert "NameError" in feedback(report, "first_step_below")  # it calls the missing snr_db


def test_values_that_differ_report_the_error_without_dumping_the_reference(tmp_path):
    wrong_q_sample = Q_SAMPLE.replace("ab.sqrt() * x0", "ab * x0")  # forgot a square root
    path = write_notebook(tmp_path / "values.ipynb", IMPORTS, LINEAR, COSINE, wrong_q_sample, SNR_DB, BELOW)
    report = grader.grade_notebook(path, limits=FAST)
    assert points(report)["q_sample"] < 2
    text = feedback(report, "q_sample")
    assert "values differ at" in text and "max abs error" in text and "q_sample(x0=<float64 array" in text
    assert text.count("expected") <= 3
    assert report.total == pytest.approx(MAX_POINTS - 2 + points(report)["q_sample"])


def test_stubs_get_zero(tmp_path):
    stub = 'def {}(*args, **kwargs):\n    raise NotImplementedError("exercise")'
    path = write_notebook(tmp_path / "stubs.ipynb", IMPORTS, *(stub.format(n) for n in NAMES))
    report = grader.grade_notebook(path, limits=FAST)
    assert report.total == 0 and report.max_total == MAX_POINTS
    assert all("not implemented yet" in q.feedback for q in report.questions)


def test_a_syntax_error_costs_only_the_questions_that_depend_on_it(tmp_path):
    broken = Q_SAMPLE.replace("return ab.sqrt()", "return ab.sqrt(")
    path = write_notebook(tmp_path / "syntax.ipynb", IMPORTS, LINEAR, COSINE, broken, SNR_DB, BELOW)
    report = grader.grade_notebook(path, limits=FAST)
    assert points(report) == {"linear_betas": 1, "cosine_betas": 2, "q_sample": 0, "snr_db": 1, "first_step_below": 2}
    assert "SyntaxError" in feedback(report, "q_sample")
    assert report.cell_errors and report.cell_errors[0]["error"] == "SyntaxError"


def test_printed_scores_and_forged_result_files_change_nothing(tmp_path):
    forge = '''
import atexit, json, os
print("Score: 100\\ntotal: 8 / 8")
def forge():
    plan = json.load(open("plan.json"))
    inputs = np.load("inputs.npz")
    fake = {c["id"]: np.zeros(8) for c in plan["calls"]}
    np.savez("results.npz", **fake)
    json.dump({"cells": [], "calls": {c["id"]: {"error": None} for c in plan["calls"]}}, open("status.json", "w"))
forge()
atexit.register(forge)
for name in ("linear_betas", "cosine_betas", "q_sample", "snr_db", "first_step_below"):
    globals()[name] = lambda *a, **k: np.zeros(8)
'''
    path = write_notebook(tmp_path / "forge.ipynb", forge)
    report = grader.grade_notebook(path, limits=FAST)
    assert report.total == 0
    assert report.problem is None


def test_infinite_loop_times_out(tmp_path):
    path = write_notebook(tmp_path / "loop.ipynb", IMPORTS, LINEAR, "while True:\n    pass")
    report = grader.grade_notebook(path, limits=sandbox.Limits(timeout_s=3))
    assert report.timed_out and report.total == 0 and report.elapsed_s < 15
    assert all(q.feedback == "timed out after 3 s" for q in report.questions)


def test_sandbox_is_isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_GRADE_SECRET", "do-not-leak")
    probe = '''
import os, resource, sys
def probe():
    allowed = {"PATH", "HOME", "LANG", "COURSE_PROFILE", "MPLBACKEND", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"}
    return np.array([
        set(os.environ) <= allowed,
        os.environ["HOME"] == os.getcwd(),
        os.environ["COURSE_PROFILE"] == "smoke",
        sys.flags.isolated == 1,
        resource.getrlimit(resource.RLIMIT_AS)[0] == 3000 * 2**20,
        resource.getrlimit(resource.RLIMIT_CORE)[0] == 0,
        resource.getrlimit(resource.RLIMIT_CPU)[0] <= 20,
        os.getsid(0) == os.getpid(),
    ])
'''
    cells = [{"index": 0, "source": "import numpy as np"}, {"index": 1, "source": probe}]
    plan = {"calls": [{"id": "c0", "function": "probe", "args": {}}]}
    outcome = sandbox.run_sandbox(cells, plan, {}, sandbox.Limits(timeout_s=15, memory_mb=3000))
    assert outcome.problem is None, outcome.problem
    assert outcome.results["c0"].tolist() == [True] * 8


@pytest.mark.parametrize(
    "name, make, args, message",
    [
        ("missing", lambda p: None, [], "no such file"),
        ("not_json", lambda p: p.write_text("this is not json"), [], "invalid JSON"),
        ("not_notebook", lambda p: p.write_text('{"hello": 1}'), [], "not a valid Jupyter notebook"),
        ("other_chapter", lambda p: write_notebook(p, "x = 1", chapter="05_reverse_diffusion"), [], "no grader for chapter"),
        ("mismatch", lambda p: write_notebook(p, "x = 1"), ["--chapter", "05_reverse_diffusion"], "not 05_reverse_diffusion"),
        ("unknown", lambda p: write_notebook(p, "x = 1", chapter=None), [], "cannot tell which chapter"),
    ],
)
def test_ungradable_submissions_exit_2_with_one_line(tmp_path, capsys, name, make, args, message):
    path = tmp_path / f"{name}.ipynb"
    make(path)
    assert cli.main([str(path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_console_script_exit_code_and_stderr(tmp_path):
    script = Path(sys.executable).with_name("course-grade")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "course_lib.grading.cli"]
    done = subprocess.run([*command, str(tmp_path / "nothing.ipynb")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().endswith("no such file") and "Traceback" not in done.stderr


def _real_notebooks_with_graded_cells() -> bool:
    solution = ROOT / "solutions" / f"{CHAPTER}.ipynb"
    if not solution.exists():
        return False
    nb = nbformat.read(solution, as_version=4)
    return any("graded" in c.metadata.get("tags", []) for c in nb.cells)


@pytest.mark.skipif(not _real_notebooks_with_graded_cells(), reason="the chapter 04 solutions notebook has no graded cells yet")
def test_chapter_04_questions_match_the_solutions_notebook():
    """Every graded cell's function has a question worth the points its heading announces, and back."""
    nb = nbformat.read(ROOT / "solutions" / f"{CHAPTER}.ipynb", as_version=4)
    announced, heading = {}, None
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            found = re.search(r"\((\d+(?:\.\d+)?) points?\)", cell.source)
            heading = float(found.group(1)) if found else heading
        elif "graded" in cell.metadata.get("tags", []):
            for name in re.findall(r"^def (\w+)\(", cell.source, re.M):
                announced[name] = heading
    questions = {q.name: float(q.points) for q in spec.questions_for(CHAPTER)}
    assert announced == questions


@pytest.mark.skipif(not _real_notebooks_with_graded_cells(), reason="the chapter 04 solutions notebook has no graded cells yet")
def test_chapter_04_solutions_get_full_marks_and_exercises_zero(tmp_path):
    solution = ROOT / "solutions" / f"{CHAPTER}.ipynb"
    exercise = tmp_path / f"{CHAPTER}.ipynb"
    exercise.write_text(release.exercise_text(solution), encoding="utf-8")
    limits = sandbox.Limits(timeout_s=300)
    solved = grader.grade_notebook(solution, limits=limits)
    assert solved.total == solved.max_total, [q.feedback for q in solved.questions]
    stubbed = grader.grade_notebook(exercise, limits=limits)
    assert stubbed.total == 0


def test_links_and_fifos_in_place_of_results_are_refused(tmp_path):
    swap = '''
import atexit, os
def swap():
    for name in ("results.npz", "status.json"):
        os.remove(name)
    os.symlink("/dev/zero", "results.npz")
    os.mkfifo("status.json")
atexit.register(swap)
'''
    path = write_notebook(tmp_path / "swap.ipynb", *ALL, swap)
    report = grader.grade_notebook(path, limits=FAST)
    assert report.total == 0 and "before returning results" in report.problem


def test_exit_in_a_cell_is_reported(tmp_path):
    path = write_notebook(tmp_path / "exit.ipynb", *ALL, "import os\nos._exit(3)")
    report = grader.grade_notebook(path, limits=FAST)
    assert report.total == 0 and "exit code 3" in report.questions[0].feedback
