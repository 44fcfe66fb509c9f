"""Grading a whole class: find each student's submission in a folder, grade them in parallel,
and write one JSON file per student and one CSV of grades.

Which notebook is a student's
=============================

The folder's entries, in name order (hidden entries, ``__pycache__`` and
``.ipynb_checkpoints`` are ignored):

* a file ``<student>.ipynb`` is that student's submission;
* a sub-folder ``<student>/`` holds that student's notebooks (not searched recursively):
  a single ``.ipynb`` in it is the submission. With several, the one named
  ``<chapter>.ipynb`` wins, else the only one whose ``course.chapter`` metadata names the
  chapter, where the chapter is ``--chapter`` or, without it, any graded chapter;
  otherwise the student gets the status ``ambiguous``. No ``.ipynb`` at all: ``missing``;
* other files are skipped (listed once on standard error).

A folder with neither ``.ipynb`` files nor sub-folders has no submissions: ``NoSubmissions``.

Statuses
========

``graded`` (the notebook ran and was scored), ``timed_out`` (the wall-clock limit ended it),
``crashed`` (its process died or sent back nothing usable), ``invalid`` (not a notebook,
malformed, another chapter, no grader for it), ``missing``, ``ambiguous``, ``duplicate``
(a second entry with the same student id) and ``error`` (the grader itself failed on this
submission; the batch goes on). The points are the grader's: 0 for every status but
``graded`` and ``timed_out`` (where what ran before the limit still counts, as when grading
that notebook alone).

Outputs
=======

``write_outputs(records, out_dir)`` writes ``out_dir/<student>.json`` per student
(``{"student", "status", "detail", "submission", "report"}``, where ``report`` is
``GradeReport.to_json()`` or ``null`` when nothing was graded) and ``out_dir/grades.csv``:
UTF-8, comma-separated, one header row, one row per student in name order, the columns
``student``, one per question (its points), ``total``, ``max``, ``status``, ``detail``.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from course_lib.grading import grader, sandbox, spec
from course_lib.grading.notebook import SubmissionError, notebook_chapter, read_notebook

IGNORED_NAMES = {"__pycache__", ".ipynb_checkpoints", "__MACOSX"}
CSV_NAME = "grades.csv"
STATUSES = ("graded", "timed_out", "crashed", "invalid", "missing", "ambiguous", "duplicate", "error")


class NoSubmissions(Exception):
    """The folder holds no submission at all (no ``.ipynb`` file and no sub-folder)."""


@dataclass
class Submission:
    """One student's entry in the class folder: the notebook to grade, or why there is none."""

    student: str
    entry: Path
    notebook: Path | None = None
    status: str | None = None  # set when there is nothing to grade (missing, ambiguous, duplicate)
    detail: str = ""


@dataclass
class StudentResult:
    student: str
    status: str
    detail: str = ""
    submission: str | None = None
    report: grader.GradeReport | None = None
    elapsed_s: float = 0.0

    def to_json(self) -> dict:
        return {
            "student": self.student,
            "status": self.status,
            "detail": self.detail,
            "submission": self.submission,
            "report": self.report.to_json() if self.report is not None else None,
        }


@dataclass
class Batch:
    """Everything ``find_submissions`` saw: the students, and the files it skipped."""

    submissions: list[Submission]
    skipped: list[Path] = field(default_factory=list)


def _visible(path: Path) -> bool:
    return not path.name.startswith(".") and path.name not in IGNORED_NAMES


def _declared_chapter(path: Path) -> str | None:
    """``metadata.course.chapter`` of a notebook file, or None when it has none or is not a notebook."""
    try:
        return notebook_chapter(read_notebook(path))
    except SubmissionError:
        return None


def _pick_notebook(folder: Path, chapter: str | None) -> tuple[Path | None, str | None, str]:
    """The notebook of a student's sub-folder: ``(path, None, "")`` or ``(None, status, detail)``."""
    notebooks = sorted(p for p in folder.iterdir() if _visible(p) and p.is_file() and p.suffix.lower() == ".ipynb")
    if not notebooks:
        others = sorted(p.name for p in folder.iterdir() if _visible(p))
        found = f" (it holds: {', '.join(others[:5])}{', ...' if len(others) > 5 else ''})" if others else " (it is empty)"
        return None, "missing", f"no .ipynb file in {folder.name}/{found}"
    if len(notebooks) == 1:
        return notebooks[0], None, ""
    wanted = [chapter] if chapter else spec.known_chapters()
    named = [p for p in notebooks if p.stem in wanted]
    if len(named) == 1:
        return named[0], None, ""
    declared = [p for p in notebooks if _declared_chapter(p) in wanted]
    if len(declared) == 1:
        return declared[0], None, ""
    names = ", ".join(p.name for p in notebooks[:5]) + (", ..." if len(notebooks) > 5 else "")
    hint = f"for chapter {chapter}" if chapter else "for a graded chapter (pass --chapter)"
    return None, "ambiguous", f"{len(notebooks)} notebooks in {folder.name}/ ({names}) and not exactly one is {hint}"


def find_submissions(folder: str | os.PathLike, chapter: str | None = None, exclude: Path | None = None) -> Batch:
    """The students of a class folder (see the module docstring); ``NoSubmissions`` when there are none.

    ``exclude`` (the output folder, when it lies inside ``folder``) is never taken for a student.
    """
    folder = Path(folder)
    exclude = exclude.resolve() if exclude is not None else None
    submissions: list[Submission] = []
    skipped: list[Path] = []
    seen: dict[str, Path] = {}
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if not _visible(entry) or (exclude is not None and entry.resolve() == exclude):
            continue
        if entry.is_dir():
            student = entry.name
            notebook, status, detail = _pick_notebook(entry, chapter)
        elif entry.is_file() and entry.suffix.lower() == ".ipynb":
            student, notebook, status, detail = entry.stem, entry, None, ""
        else:
            skipped.append(entry)
            continue
        if student in seen:
            notebook, status = None, "duplicate"
            detail = f"{entry.name} has the same student id as {seen[student].name}, which is graded instead"
        else:
            seen[student] = entry
        submissions.append(Submission(student, entry, notebook, status, detail))
    if not submissions:
        raise NoSubmissions(f"{folder}: no submissions (no .ipynb files and no sub-folders)")
    return Batch(submissions, skipped)


def report_status(report: grader.GradeReport, limits: sandbox.Limits) -> tuple[str, str]:
    """``(status, detail)`` of a report: ``timed_out`` when the time limit ended (part of) the
    notebook, ``crashed`` when no results came back at all, else ``graded``. The points are
    always the report's: what ran before a time-out still counts."""
    if report.timed_out:
        return "timed_out", report.problem or f"the time limit ({limits.timeout_s:g} s) ended part of the notebook"
    if report.problem:
        return "crashed", report.problem
    return "graded", ""


def grade_submission(
    submission: Submission,
    chapter: str | None = None,
    limits: sandbox.Limits = sandbox.Limits(),
    seed: int | None = None,
) -> StudentResult:
    """Grade one student's submission; never raises (a problem becomes the result's status)."""
    start = time.monotonic()
    result = StudentResult(submission.student, submission.status or "graded", submission.detail)
    if submission.notebook is None:
        return result
    result.submission = str(submission.notebook)
    try:
        report = grader.grade_notebook(submission.notebook, chapter, limits, seed)
    except SubmissionError as exc:
        detail = str(exc)
        prefix = f"{submission.notebook}: "
        result.status, result.detail = "invalid", detail[len(prefix):] if detail.startswith(prefix) else detail
    except Exception as exc:  # the grader's own failure on this submission must not end the batch
        result.status, result.detail = "error", f"the grader failed: {type(exc).__name__}: {exc}"[:300]
    else:
        result.report = report
        result.status, result.detail = report_status(report, limits)
    result.elapsed_s = round(time.monotonic() - start, 2)
    return result


def grade_batch(
    submissions: list[Submission],
    chapter: str | None = None,
    limits: sandbox.Limits = sandbox.Limits(),
    seed: int | None = None,
    jobs: int = 1,
    progress: Callable[[StudentResult, int, int], None] | None = None,
) -> list[StudentResult]:
    """Grade every submission, ``jobs`` at a time (each in its own sandboxed process);
    the results come back in the order of ``submissions``. ``progress(result, done, total)``
    is called as each one finishes."""
    results: list[StudentResult | None] = [None] * len(submissions)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(grade_submission, s, chapter, limits, seed): i for i, s in enumerate(submissions)}
        for done, future in enumerate(as_completed(futures), start=1):
            index = futures[future]
            results[index] = future.result()
            if progress is not None:
                progress(results[index], done, len(submissions))
    return results  # type: ignore[return-value]


# ------------------------------------------------------------------------- outputs


def question_names(results: list[StudentResult], chapter: str | None = None) -> list[str]:
    """The CSV's question columns: the chapter's questions, then any other graded ones, in order."""
    names: list[str] = []
    if chapter is not None:
        try:
            names = [q.name for q in spec.questions_for(chapter)]
        except KeyError:
            names = []
    for result in results:
        for question in result.report.questions if result.report else []:
            if question.name not in names:
                names.append(question.name)
    return names


def batch_max(results: list[StudentResult], chapter: str | None = None) -> float:
    """The maximum score of the batch's chapter (``--chapter``, or the one every graded report shares)."""
    if chapter is not None:
        try:
            return round(sum(float(q.points) for q in spec.questions_for(chapter)), 2)
        except KeyError:
            pass
    maxima = {r.report.max_total for r in results if r.report is not None}
    return maxima.pop() if len(maxima) == 1 else 0.0


def _number(value: float) -> str:
    return f"{value:g}"


def csv_rows(results: list[StudentResult], chapter: str | None = None) -> list[list[str]]:
    """Header and one row per student, sorted by student id."""
    names = question_names(results, chapter)
    default_max = batch_max(results, chapter)
    rows = [["student", *names, "total", "max", "status", "detail"]]
    for result in sorted(results, key=lambda r: r.student):
        got = {q.name: q.points for q in result.report.questions} if result.report else {}
        total = result.report.total if result.report else 0.0
        maximum = result.report.max_total if result.report else default_max
        detail = " ".join(result.detail.split())
        rows.append([result.student, *(_number(got.get(n, 0.0)) for n in names), _number(total), _number(maximum),
                     result.status, detail])
    return rows


def write_outputs(results: list[StudentResult], out_dir: str | os.PathLike, chapter: str | None = None) -> list[Path]:
    """``out_dir/<student>.json`` for each student and ``out_dir/grades.csv``; the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for result in results:
        if result.status == "duplicate":
            continue  # its id's file belongs to the entry that was graded
        path = out / f"{result.student}.json"
        path.write_text(json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    csv_path = out / CSV_NAME
    with csv_path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(csv_rows(results, chapter))
    written.append(csv_path)
    return written


def summary(results: list[StudentResult], elapsed_s: float, chapter: str | None = None) -> str:
    """A few lines: how many students, by status, and the mean score of those graded."""
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    by_status = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    graded = [r.report.total for r in results if r.status == "graded" and r.report is not None]
    maximum = batch_max(results, chapter)
    line = f"{len(results)} students in {elapsed_s:.1f} s: {by_status}"
    if graded:
        line += f"; mean total of the graded {sum(graded) / len(graded):.2f} / {maximum:g}"
    return line


def format_table(results: list[StudentResult], chapter: str | None = None) -> str:
    """One line per student: total / max, status and the reason when it is not ``graded``."""
    default_max = batch_max(results, chapter)
    rows = []
    for r in sorted(results, key=lambda r: r.student):
        total = r.report.total if r.report else 0.0
        maximum = r.report.max_total if r.report else default_max
        rows.append((r.student, f"{total:g} / {maximum:g}", r.status, r.detail if r.status != "graded" else ""))
    width = max([len("student")] + [len(r[0]) for r in rows])
    points = max([len("total")] + [len(r[1]) for r in rows])
    lines = [f"{'student':<{width}}  {'total':>{points}}  status"]
    for student, score, status, detail in rows:
        lines.append(f"{student:<{width}}  {score:>{points}}  {status}" + (f": {detail}" if detail else ""))
    return "\n".join(lines)


def progress_line(result: StudentResult, done: int, total: int) -> str:
    score = f"{result.report.total:g} / {result.report.max_total:g}" if result.report else "0 points"
    return f"[{done}/{total}] {result.student}: {score} ({result.status}, {result.elapsed_s:.1f} s)"


def print_progress(result: StudentResult, done: int, total: int) -> None:
    print(progress_line(result, done, total), file=sys.stderr, flush=True)
