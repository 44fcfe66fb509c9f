"""``course-grade``: grade one submitted notebook, or every notebook in a folder.

    course-grade submission.ipynb [--chapter 04_forward_diffusion] [--json result.json]
                 [--timeout 120] [--memory-mb 4096] [--seed N]

Prints a table (question, points / max, feedback) and the total. Exit status 0 when
grading happened, whatever the score; 2 with one line on stderr when the submission
cannot be graded (missing, not a notebook, another chapter, no grader).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from course_lib.grading import grader, sandbox
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
    parser.add_argument("path", help="a submitted .ipynb, or a folder of them")
    parser.add_argument("--chapter", help="chapter id, e.g. 04_forward_diffusion (default: from the notebook)")
    parser.add_argument("--json", dest="json_out", help="write the machine-readable result here")
    parser.add_argument("--timeout", type=float, default=sandbox.Limits.timeout_s, help="seconds per notebook")
    parser.add_argument("--memory-mb", type=int, default=sandbox.Limits.memory_mb, help="address-space limit")
    parser.add_argument("--seed", type=int, help="seed of the test inputs (default: fresh and secret)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.timeout <= 0 or args.memory_mb <= 0:
        print("course-grade: --timeout and --memory-mb must be positive", file=sys.stderr)
        return 2
    limits = sandbox.Limits(timeout_s=args.timeout, memory_mb=args.memory_mb)
    path = Path(args.path)
    submissions = sorted(path.glob("*.ipynb")) if path.is_dir() else [path]
    if not submissions:
        print(f"course-grade: {path}: no .ipynb files in this folder", file=sys.stderr)
        return 2
    reports, failures = [], []
    for submission in submissions:
        try:
            report = grader.grade_notebook(submission, args.chapter, limits, args.seed)
        except SubmissionError as exc:
            print(f"course-grade: {exc}", file=sys.stderr)
            failures.append({"notebook": str(submission), "error": str(exc)})
            continue
        reports.append(report)
        print(format_report(report))
    if args.json_out:
        data = reports[0].to_json() if not path.is_dir() and reports else {
            "submissions": [r.to_json() for r in reports],
            "errors": failures,
        }
        Path(args.json_out).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return 0 if reports else 2


if __name__ == "__main__":
    sys.exit(main())
