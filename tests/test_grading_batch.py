"""Grading a class folder with ``course-grade DIR``: one row per student, whatever goes wrong."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from course_lib.grading import batch, cli
from tests.grading_attacks.answers import BELOW, COSINE, IMPORTS, LINEAR, Q_SAMPLE, SNR_DB

CHAPTER = "04_forward_diffusion"
QUESTIONS = ["linear_betas", "cosine_betas", "q_sample", "snr_db", "first_step_below"]

WRONG_Q_SAMPLE = Q_SAMPLE.replace("ab.sqrt() * x0", "ab * x0")  # forgot a square root


def write_notebook(path: Path, *sources: str, chapter: str | None = CHAPTER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nb = new_notebook(metadata={"course": {"chapter": chapter, "kind": "exercises"}} if chapter else {})
    nb.cells = [new_markdown_cell("# Exercises")] + [new_code_cell(s) for s in sources]
    nbformat.write(nb, path)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    raw = path.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf"), "plain UTF-8, no byte-order mark"
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def class_folder(tmp_path) -> Path:
    folder = tmp_path / "submissions"
    write_notebook(folder / "alice.ipynb", IMPORTS, LINEAR, COSINE, Q_SAMPLE, SNR_DB, BELOW)  # a file, all right
    # a sub-folder with one notebook (and a stray file), q_sample wrong
    write_notebook(folder / "bob" / "my_work.ipynb", IMPORTS, LINEAR, COSINE, WRONG_Q_SAMPLE, SNR_DB, BELOW)
    (folder / "bob" / "notes.txt").write_text("hello", encoding="utf-8")
    (folder / "carol.ipynb").write_text('{"cells": [ oops', encoding="utf-8")  # broken JSON
    write_notebook(folder / "dan.ipynb", IMPORTS, LINEAR, chapter="05_reverse_diffusion")  # another chapter
    (folder / "README.txt").write_text("not a submission", encoding="utf-8")
    return folder


def test_class_folder_gives_one_row_per_student_and_the_same_csv_with_jobs(class_folder, tmp_path, capsys):
    out1, out2 = tmp_path / "out1", tmp_path / "out2"
    args = [str(class_folder), "--chapter", CHAPTER, "--timeout", "60", "--seed", "7"]
    assert cli.main([*args, "--jobs", "1", "--out", str(out1)]) == 0
    captured = capsys.readouterr()
    progress = [line for line in captured.err.splitlines() if line.startswith("[")]
    assert len(progress) == 4 and progress[-1].startswith("[4/4] ")
    assert "README.txt" in captured.err  # skipped, and said so
    assert "4 students" in captured.out and "2 graded, 2 invalid" in captured.out

    rows = read_csv(out1 / "grades.csv")
    assert list(rows[0]) == ["student", *QUESTIONS, "total", "max", "status", "detail"]
    by_student = {r["student"]: r for r in rows}
    assert list(by_student) == ["alice", "bob", "carol", "dan"]
    assert {s: r["status"] for s, r in by_student.items()} == {
        "alice": "graded", "bob": "graded", "carol": "invalid", "dan": "invalid",
    }
    assert by_student["alice"]["total"] == by_student["alice"]["max"] == "8"
    assert [by_student["alice"][q] for q in QUESTIONS] == ["1", "2", "2", "1", "2"]
    assert float(by_student["bob"]["q_sample"]) < 2 and float(by_student["bob"]["total"]) < 8
    for student in ("carol", "dan"):
        assert by_student[student]["total"] == "0" and by_student[student]["max"] == "8"
        assert all(by_student[student][q] == "0" for q in QUESTIONS)
    assert "invalid JSON" in by_student["carol"]["detail"]
    assert "05_reverse_diffusion" in by_student["dan"]["detail"]

    assert sorted(p.name for p in out1.iterdir()) == ["alice.json", "bob.json", "carol.json", "dan.json", "grades.csv"]
    bob = json.loads((out1 / "bob.json").read_text(encoding="utf-8"))
    assert bob["student"] == "bob" and bob["status"] == "graded"
    assert bob["submission"].endswith("my_work.ipynb")
    feedback = {q["name"]: q["feedback"] for q in bob["report"]["questions"]}
    # actionable: the call, which check failed, by how much; at most a few expected values
    assert "q_sample(x0=<float64 array" in feedback["q_sample"] and "values differ at" in feedback["q_sample"]
    assert "max abs error" in feedback["q_sample"] and feedback["q_sample"].count("expected") <= 3
    assert feedback["linear_betas"] == "all 4 cases passed"
    carol = json.loads((out1 / "carol.json").read_text(encoding="utf-8"))
    assert carol["status"] == "invalid" and carol["report"] is None and "invalid JSON" in carol["detail"]

    assert cli.main([*args, "--jobs", "2", "--out", str(out2)]) == 0
    assert (out2 / "grades.csv").read_bytes() == (out1 / "grades.csv").read_bytes()


def test_timeouts_and_crashes_get_a_row_with_zero(tmp_path, capsys):
    folder = tmp_path / "class"
    write_notebook(folder / "loop.ipynb", IMPORTS, LINEAR, "while True:\n    pass")
    write_notebook(folder / "quits.ipynb", "import os\nos._exit(3)")
    out = tmp_path / "out"
    assert cli.main([str(folder), "--timeout", "4", "--jobs", "2", "--out", str(out), "--json", str(tmp_path / "all.json")]) == 0
    rows = {r["student"]: r for r in read_csv(out / "grades.csv")}
    assert rows["loop"]["status"] == "timed_out" and "4 s" in rows["loop"]["detail"]
    assert float(rows["loop"]["total"]) <= 1  # at most linear_betas, defined before the loop
    assert rows["quits"]["total"] == "0" and rows["quits"]["status"] in ("crashed", "graded")
    combined = json.loads((tmp_path / "all.json").read_text(encoding="utf-8"))
    assert [s["student"] for s in combined["students"]] == ["loop", "quits"]


@pytest.mark.parametrize("content", [None, "notes.txt"])
def test_a_folder_without_submissions_exits_2_with_one_line(tmp_path, capsys, content):
    folder = tmp_path / "empty"
    folder.mkdir()
    if content:
        (folder / content).write_text("nothing to grade", encoding="utf-8")
    assert cli.main([str(folder), "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert "no submissions" in captured.err and captured.err.count("\n") == 1 and captured.out == ""
    assert not (tmp_path / "out").exists()


def test_which_notebook_of_a_sub_folder_is_graded(tmp_path):
    folder = tmp_path / "class"
    write_notebook(folder / "one" / "anything.ipynb", "x = 1")
    write_notebook(folder / "named" / f"{CHAPTER}.ipynb", "x = 1")
    write_notebook(folder / "named" / "scratch.ipynb", "x = 1", chapter=None)
    write_notebook(folder / "declared" / "final.ipynb", "x = 1")
    write_notebook(folder / "declared" / "draft.ipynb", "x = 1", chapter=None)
    write_notebook(folder / "two" / "a.ipynb", "x = 1")
    write_notebook(folder / "two" / "b.ipynb", "x = 1")
    (folder / "none").mkdir()
    (folder / "none" / "report.pdf").write_bytes(b"%PDF")
    write_notebook(folder / "one.ipynb", "x = 1")  # the same student id as one/
    (folder / ".hidden").mkdir()
    (folder / "__pycache__").mkdir()
    found = batch.find_submissions(folder, CHAPTER)
    got = [(s.student, s.entry.name, s.notebook.name if s.notebook else None, s.status) for s in found.submissions]
    assert got == [
        ("declared", "declared", "final.ipynb", None),  # the only one whose metadata names the chapter
        ("named", "named", f"{CHAPTER}.ipynb", None),  # named after the chapter
        ("none", "none", None, "missing"),
        ("one", "one", "anything.ipynb", None),  # the single notebook of its folder
        ("one", "one.ipynb", None, "duplicate"),
        ("two", "two", None, "ambiguous"),
    ]
    results = [batch.grade_submission(s) for s in found.submissions if s.notebook is None]
    assert {r.status for r in results} == {"missing", "ambiguous", "duplicate"}
    assert all(r.report is None for r in results)
    rows = batch.csv_rows(results, CHAPTER)
    assert rows[0][-4:] == ["total", "max", "status", "detail"] and all(r[-4] == "0" for r in rows[1:])


def test_out_with_a_single_unusable_notebook_writes_nothing(tmp_path, capsys):
    path = tmp_path / "bad.ipynb"
    path.write_text("not json", encoding="utf-8")
    assert cli.main([str(path), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "out").exists()
