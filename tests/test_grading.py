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

from course_lib.grading import cli, grader, isolation, release, sandbox, spec
from tests.grading_attacks.answers import BELOW, COSINE, IMPORTS, LINEAR, Q_SAMPLE, SNR_DB

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "04_forward_diffusion"
FAST = sandbox.Limits(timeout_s=60)

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
    assert result["isolation"] == isolation.current_mode().describe()
    assert result["runs"] == 1  # an honest notebook is graded in one process
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


def test_an_infinite_loop_costs_only_its_cell(tmp_path):
    path = write_notebook(tmp_path / "loop.ipynb", IMPORTS, LINEAR, "while True:\n    pass", COSINE)
    report = grader.grade_notebook(path, limits=sandbox.Limits(timeout_s=40, cell_timeout_s=3))
    assert report.timed_out and report.runs == 2 and report.elapsed_s < 20
    assert points(report)["linear_betas"] == 1 and points(report)["cosine_betas"] == 2
    assert any(e["error"] == "TimeoutError" and e["cell"] == 3 for e in report.cell_errors)


def test_the_whole_notebook_has_a_time_limit(tmp_path):
    path = write_notebook(tmp_path / "slow.ipynb", IMPORTS, LINEAR, "import time\nwhile True:\n    time.sleep(0.1)")
    report = grader.grade_notebook(path, limits=sandbox.Limits(timeout_s=3, cell_timeout_s=30))
    assert report.timed_out and report.total == 0 and report.elapsed_s < 10
    assert all(q.feedback == "timed out after 3 s" for q in report.questions)


def test_a_hanging_question_is_stopped_and_the_others_graded(tmp_path):
    hang = "def q_sample(x0, t, alphas_cumprod, noise):\n    while True:\n        pass"
    path = write_notebook(tmp_path / "hang.ipynb", IMPORTS, LINEAR, COSINE, hang, SNR_DB, BELOW)
    report = grader.grade_notebook(path, limits=sandbox.Limits(timeout_s=40, question_timeout_s=3))
    assert points(report) == {"linear_betas": 1, "cosine_betas": 2, "q_sample": 0, "snr_db": 1, "first_step_below": 2}
    assert feedback(report, "q_sample") == "timed out after 3 s" and report.runs == 2


def test_sandbox_is_isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_GRADE_SECRET", "do-not-leak")
    probe = '''
import os, resource, sys
def probe():
    allowed = {"PATH", "HOME", "LANG", "COURSE_PROFILE", "MPLBACKEND", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "PWD"}
    return np.array([
        set(os.environ) <= allowed,
        os.environ["HOME"] == os.getcwd(),
        os.environ["COURSE_PROFILE"] == "smoke",
        sys.flags.isolated == 1,
        resource.getrlimit(resource.RLIMIT_AS)[0] == 3000 * 2**20,
        resource.getrlimit(resource.RLIMIT_CORE)[0] == 0,
        resource.getrlimit(resource.RLIMIT_CPU)[0] <= 20,
        os.getsid(0) == os.getpid() or os.getpid() == 2,
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
        ("other_chapter", lambda p: write_notebook(p, "x = 1", chapter="99_not_a_chapter"), [], "no grader for chapter"),
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


def _graded_solution_notebooks() -> list[Path]:
    """Every solutions notebook with graded cells: each chapter's grader is checked against its own."""
    found = []
    for solution in sorted((ROOT / "solutions").glob("*.ipynb")):
        nb = nbformat.read(solution, as_version=4)
        if any("graded" in c.metadata.get("tags", []) for c in nb.cells):
            found.append(solution)
    return found


GRADED_SOLUTIONS = _graded_solution_notebooks()


def test_every_graded_solutions_notebook_has_a_grader():
    assert GRADED_SOLUTIONS, "no solutions notebook has graded cells"
    assert {p.stem for p in GRADED_SOLUTIONS} <= set(spec.known_chapters())


@pytest.mark.parametrize("solution", GRADED_SOLUTIONS, ids=[p.stem for p in GRADED_SOLUTIONS])
def test_questions_match_the_solutions_notebook(solution):
    """Every graded cell's function has a question worth the points its heading announces, and back."""
    nb = nbformat.read(solution, as_version=4)
    announced, heading = {}, None
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            found = re.search(r"\((\d+(?:\.\d+)?) points?\)", cell.source)
            heading = float(found.group(1)) if found else heading
        elif "graded" in cell.metadata.get("tags", []):
            for name in re.findall(r"^def (\w+)\(", cell.source, re.M):
                announced[name] = heading
    questions = {q.name: float(q.points) for q in spec.questions_for(solution.stem)}
    assert announced == questions


@pytest.mark.parametrize("solution", GRADED_SOLUTIONS, ids=[p.stem for p in GRADED_SOLUTIONS])
def test_solutions_get_full_marks_and_exercises_zero(solution, tmp_path):
    exercise = tmp_path / solution.name
    exercise.write_text(release.exercise_text(solution), encoding="utf-8")
    limits = sandbox.Limits(timeout_s=300)
    solved = grader.grade_notebook(solution, limits=limits)
    assert solved.total == solved.max_total, [q.feedback for q in solved.questions]
    stubbed = grader.grade_notebook(exercise, limits=limits)
    assert stubbed.total == 0


def test_links_and_fifos_in_place_of_results_are_refused(tmp_path):
    swap = BELOW.replace("    below =", """    import os
    for name in ("results_g0.npz", "status_g0.json"):
        if os.path.lexists(name):
            os.remove(name)
    if not os.path.lexists("results_g0.npz"):
        os.symlink("/dev/zero", "results_g0.npz")
        os.mkfifo("status_g0.json")
    below =""")
    path = write_notebook(tmp_path / "swap.ipynb", IMPORTS, LINEAR, COSINE, Q_SAMPLE, SNR_DB, swap)
    report = grader.grade_notebook(path, limits=FAST)
    assert points(report) == {"linear_betas": 0, "cosine_betas": 2, "q_sample": 2, "snr_db": 1, "first_step_below": 2}
    assert "no result came back" in feedback(report, "linear_betas")


def test_exit_in_a_cell_skips_only_that_cell(tmp_path):
    path = write_notebook(tmp_path / "exit.ipynb", IMPORTS, LINEAR, "import os\nos._exit(3)", COSINE, Q_SAMPLE, SNR_DB, BELOW)
    report = grader.grade_notebook(path, limits=FAST)
    assert report.total == MAX_POINTS and report.runs == 2
    assert [(e["cell"], e["error"]) for e in report.cell_errors] == [(3, "ProcessExit")]
    assert "exit code 3" in report.cell_errors[0]["message"]


PROBE_VIEW = '''
import os, sys
def probe():
    import course_lib
    from course_lib import runtime
    checks = [course_lib.__file__.startswith(sys.path[0])]
    for name in ("course_lib.grading", "course_lib.grading.chapters", "course_lib.diffusion"):
        try:
            __import__(name)
            checks.append(False)
        except ImportError:
            checks.append(True)
    return np.array(checks)
def probe_fs():
    root = {root!r}
    hidden = [root + "/solutions/04_forward_diffusion.ipynb", root + "/course_lib/grading/chapters/ch04_forward_diffusion.py",
              root + "/course_lib/diffusion/schedules.py"]
    return np.array([not os.path.exists(p) for p in hidden] + [os.getuid() != 0])
'''


def test_the_student_view_hides_the_grader_and_the_answers(tmp_path):
    cells = [{"index": 0, "source": "import numpy as np"}, {"index": 1, "source": PROBE_VIEW.format(root=str(ROOT))}]
    plan = {"calls": [{"id": "c0", "function": "probe", "args": {}}, {"id": "c1", "function": "probe_fs", "args": {}}]}
    outcome = sandbox.run_sandbox(cells, plan, {}, sandbox.Limits(timeout_s=30), ("course_lib/diffusion",))
    assert outcome.problem is None and not outcome.question_problems, outcome
    assert outcome.results["c0"].tolist() == [True] * 4
    mode = isolation.current_mode()
    if mode.bubblewrap:  # the repository is not mounted at all
        assert outcome.results["c1"].tolist()[:3] == [True] * 3
    if mode.drop_to_uid:
        assert outcome.results["c1"].tolist()[3]


def test_the_fallback_without_bubblewrap_still_grades(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_GRADE_NO_BWRAP", "1")
    isolation.current_mode.cache_clear()
    try:
        path = write_notebook(tmp_path / "good.ipynb", *ALL)
        report = grader.grade_notebook(path, limits=FAST)
    finally:
        monkeypatch.delenv("COURSE_GRADE_NO_BWRAP")
        isolation.current_mode.cache_clear()
    assert report.total == MAX_POINTS
    assert report.isolation.startswith("subprocess+rlimits") and "bubblewrap disabled" in report.isolation
