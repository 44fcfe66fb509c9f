"""``course-grade``: grade one submitted notebook, or a whole class folder of them.

    course-grade submission.ipynb [--chapter 04_forward_diffusion] [--json result.json]
                 [--timeout 120] [--memory-mb 4096] [--seed N] [--out DIR]
    course-grade submissions/ --chapter 04_forward_diffusion --jobs 4 --out results/

One notebook: prints a table (question, points / max, feedback) and the total. Exit
status 0 when grading happened, whatever the score; 2 with one line on stderr when the
submission cannot be graded (missing, not a notebook, another chapter, no grader).

A folder: one student per ``<student>.ipynb`` file or ``<student>/`` sub-folder (see
``course_lib.grading.batch`` for which notebook of a sub-folder is graded), graded
``--jobs`` at a time. One line per finished student goes to stderr, a table of totals and
a summary to stdout. A submission that cannot be graded gets a row with its status and 0
points; the batch goes on. ``--out DIR`` writes ``DIR/<student>.json`` and
``DIR/grades.csv``. Exit status 0 when the batch ran; 2 with one line on stderr only when
the folder holds no submission at all.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from course_lib.grading import batch, grader, sandbox
from course_lib.grading.notebook import SubmissionError


def format_report(report: grader.GradeReport) -> str:
    rows = [(q.name, f"{q.points:g} / {q.max_points:g}", q.feedback) for q in report.questions]
    name_width = max([len("question")] + [len(r[0]) for r in rows])
    points_width = max([len("points")] + [len(r[1]) for r in rows])
    lines = [f"{report.notebook}: chapter {report.chapter}"]
    lines.append(f"{'question':<{name_width}}  {'points':>{points_width}}  feedback")
    lines += [f"{n:<{name_width}}  {p:>{points_width}}  {f}" for n, p, f in rows]
    for error in report.cell_errors[:5]:
        lines.append(f"note: cell {error['cell']} raised {error['error']}: {error['message']}")
    lines.append(f"total: {report.total:g} / {report.max_total:g}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="course-grade", description="Autograde exercise notebooks.")
    parser.add_argument("path", help="a submitted .ipynb, or a class folder (one .ipynb file or sub-folder per student)")
    parser.add_argument("--chapter", help="chapter id, e.g. 04_forward_diffusion (default: from the notebook)")
    parser.add_argument("--json", dest="json_out", help="write the machine-readable result here")
    parser.add_argument("--out", help="write <student>.json per student and grades.csv into this folder")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks graded at the same time (default 1)")
    parser.add_argument("--timeout", type=float, default=sandbox.Limits.timeout_s, help="seconds per notebook")
    parser.add_argument("--memory-mb", type=int, default=sandbox.Limits.memory_mb, help="address-space limit")
    parser.add_argument("--seed", type=int, help="seed of the test inputs (default: fresh and secret)")
    return parser


def _write_json(path: str, data: dict) -> None:
    Path(path).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _grade_one(path: Path, args, limits: sandbox.Limits) -> int:
    try:
        report = grader.grade_notebook(path, args.chapter, limits, args.seed)
    except SubmissionError as exc:
        print(f"course-grade: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json_out:
        _write_json(args.json_out, report.to_json())
    if args.out:
        status, detail = batch.report_status(report, limits)
        result = batch.StudentResult(path.stem, status, detail, str(path), report, report.elapsed_s)
        batch.write_outputs([result], args.out, report.chapter)
    return 0


def _grade_folder(path: Path, args, limits: sandbox.Limits) -> int:
    out = Path(args.out) if args.out else None
    try:
        found = batch.find_submissions(path, args.chapter, exclude=out)
    except (batch.NoSubmissions, OSError) as exc:
        print(f"course-grade: {exc}", file=sys.stderr)
        return 2
    if found.skipped:
        names = ", ".join(p.name for p in found.skipped[:5]) + (", ..." if len(found.skipped) > 5 else "")
        print(f"course-grade: skipping {len(found.skipped)} file(s) that are not .ipynb: {names}", file=sys.stderr)
    print(f"course-grade: grading {len(found.submissions)} students, {args.jobs} at a time", file=sys.stderr, flush=True)
    start = time.monotonic()
    results = batch.grade_batch(found.submissions, args.chapter, limits, args.seed, args.jobs, batch.print_progress)
    elapsed = time.monotonic() - start
    print(batch.format_table(results, args.chapter))
    print(batch.summary(results, elapsed, args.chapter))
    if out is not None:
        written = batch.write_outputs(results, out, args.chapter)
        print(f"wrote {out / batch.CSV_NAME} and {len(written) - 1} per-student JSON files")
    if args.json_out:
        _write_json(args.json_out, {"folder": str(path), "chapter": args.chapter, "students": [r.to_json() for r in results]})
    return 0



def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.timeout <= 0 or args.memory_mb <= 0 or args.jobs <= 0:
        print("course-grade: --timeout, --memory-mb and --jobs must be positive", file=sys.stderr)
        return 2
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        print(f"course-grade: --out {args.out}: exists and is not a folder", file=sys.stderr)
        return 2
    limits = sandbox.Limits(timeout_s=args.timeout, memory_mb=args.memory_mb)
    path = Path(args.path)
    if path.is_dir():
        return _grade_folder(path, args, limits)
    return _grade_one(path, args, limits)


if __name__ == "__main__":
    sys.exit(main())
