"""Benchmark of the autograder: one submission, a class of generated submissions, memory, attacks.

    .venv/bin/python benchmarks/grading.py                  # 100 submissions, --jobs 2
    .venv/bin/python benchmarks/grading.py --students 20 --jobs 4 --json benchmarks/results/grading.json

Everything goes through the real command line (``python -m course_lib.grading.cli``) in a
subprocess, as an instructor would run it:

1. the chapter 04 solutions notebook, graded alone (wall time of the whole command, and the
   sandbox's own time from the report);
2. a class folder of ``--students`` copies of ``solutions/04_forward_diffusion.ipynb``, each
   graded function in each copy drawn at random (fixed seed) from: correct, wrong (the
   solution's result scaled by 1.01), stubbed (the exercise's ``NotImplementedError``) and
   broken (a syntax error in its cell); two copies of the class are not notebooks at all.
   Graded with ``--jobs``;
3. peak memory: the resident memory of the grader's whole process tree (the command and the
   sandboxes it starts), sampled every 50 ms, and the largest single process
   (``ru_maxrss`` of the finished children);
4. the attack suite ``tests.grading_attacks`` when it exists: how many attack submissions
   score 0 on the questions they target (a malformed file counts when it is refused), graded
   ``--jobs`` at a time with the suite's ``ATTACK_LIMITS``; the fork bomb only where a process
   cap holds (the grader is not root, or the isolation names an unprivileged uid) or with
   ``--fork-bomb``. ``--no-attacks`` skips them.

Prints a markdown table with the machine (cores) and the isolation the report names.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_lib.grading import release  # noqa: E402
from memory import PeakRSS  # noqa: E402  (benchmarks/memory.py, beside this script)

CHAPTER = "04_forward_diffusion"
SOLUTION = ROOT / "solutions" / f"{CHAPTER}.ipynb"
VARIANTS = ("correct", "wrong", "stubbed", "broken")


# ----------------------------------------------------------------------- submissions


def _function_name(source: str) -> str | None:
    for line in source.split("\n"):
        match = release.DEF_LINE.match(line)
        if match and not match.group(1):
            return match.group(2)
    return None


def _variant(source: str, variant: str) -> str:
    """A graded cell's source turned into one of the VARIANTS."""
    name = _function_name(source)
    if variant == "correct" or name is None:
        return source
    if variant == "stubbed":
        return release.strip_solution(source)
    if variant == "broken":
        return source.replace("# END SOLUTION", "return (  # a syntax error\n    # END SOLUTION", 1)
    # wrong: the right function under another name, and a wrapper that is off by 1 %
    return (
        source.replace(f"def {name}(", f"def _right_{name}(", 1)
        + f"\n\n\ndef {name}(*args, **kwargs):\n    return _right_{name}(*args, **kwargs) * 1.01 + 1e-3\n"
    )


def make_class(folder: Path, students: int, seed: int = 0) -> dict[str, str]:
    """Write ``students`` submissions into ``folder``; returns each student's recipe."""
    rng = np.random.default_rng(seed)
    solution = nbformat.read(SOLUTION, as_version=4)
    recipes = {}
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(students):
        student = f"student{index:03d}"
        if index in (students // 3, 2 * students // 3) and students >= 10:
            (folder / f"{student}.ipynb").write_text('{"cells": [', encoding="utf-8")  # not a notebook
            recipes[student] = "invalid"
            continue
        nb = nbformat.from_dict(json.loads(json.dumps(solution)))
        chosen = []
        for cell in nb.cells:
            if cell.cell_type == "code" and "graded" in cell.metadata.get("tags", []):
                variant = VARIANTS[int(rng.choice(4, p=[0.7, 0.1, 0.1, 0.1]))]
                cell.source = _variant(cell.source, variant)
                chosen.append(variant[0])
        nb.metadata["course"]["kind"] = "exercises"
        target = folder / student / f"{CHAPTER}.ipynb" if index % 2 else folder / f"{student}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
        recipes[student] = "".join(chosen)
    return recipes


# ----------------------------------------------------------------------- measuring


def run_measured(command: list[str], timeout: float) -> dict:
    """Run ``command``; its wall time, exit code, output and the peak RSS of its process tree."""
    start = time.monotonic()
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with PeakRSS(psutil.Process(child.pid)) as rss:
        try:
            out, err = child.communicate(timeout=timeout)
        finally:
            if child.poll() is None:
                child.kill()
    return {
        "wall_s": time.monotonic() - start,
        "rc": child.returncode,
        "stdout": out,
        "stderr": err,
        "peak_tree_mb": rss.peak / 2**20,
        "max_child_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,  # KiB on Linux
    }


def _grade_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "course_lib.grading.cli", *args]


# ----------------------------------------------------------------------- attacks


def attack_row(jobs: int, isolation: str, fork_bomb: bool) -> str:
    """``k / n`` attack submissions scoring 0 on their targeted questions, or why there is no number.

    An ``ungradable`` attack (a malformed file) counts when the grader refuses it. The fork bomb
    (``needs_process_cap``) runs only where a process cap holds: the grader is not root, or the
    isolation names a separate uid, or ``--fork-bomb`` is given."""
    try:
        from tests.grading_attacks import ATTACK_LIMITS, attacks  # the grader's attack suite
    except ImportError:
        return "suite not found (tests/grading_attacks)"
    from course_lib.grading import grade_notebook
    from course_lib.grading.notebook import SubmissionError

    capped = fork_bomb or os.geteuid() != 0 or "uid" in isolation
    every = attacks()
    suite = [a for a in every if capped or not a.needs_process_cap]
    skipped = [a.name for a in every if not (capped or not a.needs_process_cap)]

    def one(attack, folder: Path) -> tuple[bool, bool]:
        path = attack.write(folder / f"{attack.name}.ipynb")
        try:
            report = grade_notebook(path, limits=ATTACK_LIMITS)
        except SubmissionError:
            return attack.ungradable, attack.ungradable
        if attack.ungradable:
            return False, False
        points = {q.name: q.points for q in report.questions}
        return all(points.get(t, 0) == 0 for t in attack.targets), attack.defeated(report)

    with tempfile.TemporaryDirectory(prefix="grading-attacks-") as tmp:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            outcomes = list(pool.map(lambda a: one(a, Path(tmp)), suite))
    zero = sum(z for z, _ in outcomes)
    defeated = sum(d for _, d in outcomes)
    failed = [a.name for a, (z, _) in zip(suite, outcomes) if not z]
    text = f"{zero} / {len(suite)} (of which {defeated} also keep full points on the other questions)"
    spoiled = [a.name for a, (z, d) in zip(suite, outcomes) if z and not d]
    if failed:
        text += f"; scoring: {', '.join(failed)}"
    if spoiled:
        text += f"; lost honest points: {', '.join(spoiled)}"
    if skipped:
        text += f"; not run without a process cap: {', '.join(skipped)}"
    return text


# ----------------------------------------------------------------------- report


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = psutil.virtual_memory().total / 2**30
    return f"{cpu}, {usable} usable cores ({os.cpu_count()} online), {memory:.0f} GiB RAM, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=100, help="submissions in the generated class (default 100)")
    parser.add_argument("--jobs", type=int, default=2, help="course-grade --jobs for the class (default 2)")
    parser.add_argument("--timeout", type=float, default=120, help="course-grade --timeout (default 120)")
    parser.add_argument("--keep", help="write the generated class and the results here instead of a temporary folder")
    parser.add_argument("--json", dest="json_out", help="also write the numbers as JSON")
    parser.add_argument("--no-attacks", action="store_true", help="skip the attack suite")
    parser.add_argument("--fork-bomb", action="store_true", help="run the fork-bomb attack even without a process cap")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="grading-bench-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        single_json = work / "solution.json"
        single = run_measured(
            _grade_command(str(SOLUTION), "--json", str(single_json), "--timeout", str(args.timeout)), 600
        )
        if single["rc"] != 0:
            print(single["stderr"], file=sys.stderr)
            return 1
        report = json.loads(single_json.read_text(encoding="utf-8"))

        class_dir, out_dir = work / "class", work / "results"
        recipes = make_class(class_dir, args.students)
        many = run_measured(
            _grade_command(str(class_dir), "--chapter", CHAPTER, "--jobs", str(args.jobs), "--out", str(out_dir),
                           "--timeout", str(args.timeout)),
            24 * 3600,
        )
        if many["rc"] != 0:
            print(many["stderr"], file=sys.stderr)
            return 1
        with (out_dir / "grades.csv").open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        statuses = {}
        for row in rows:
            statuses[row["status"]] = statuses.get(row["status"], 0) + 1
        full = sum(float(r["total"]) == float(r["max"]) for r in rows)
        expected_full = sum(recipe == "ccccc" for recipe in recipes.values())
        attacks = attack_row(args.jobs, str(report.get("isolation", "")), args.fork_bomb) if not args.no_attacks else "not run (--no-attacks)"

    n = len(rows)
    isolation = report.get("isolation", "not in the report")
    results = [
        ("machine", machine()),
        ("isolation (from the report)", f"`{isolation}`"),
        ("grade one submission (chapter 04 solution, whole command)",
         f"{single['wall_s']:.1f} s (sandbox {report.get('elapsed_s', float('nan')):.1f} s; {report['total']:g} / {report['max_total']:g})"),
        (f"grade a class of {n} submissions, --jobs {args.jobs}",
         f"{many['wall_s']:.1f} s ({many['wall_s'] / max(n, 1):.2f} s per submission)"),
        ("class outcome", ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
         + f"; full marks {full} (expected {expected_full})"),
        ("peak RSS, grader process tree (sampled 50 ms): one / class",
         f"{single['peak_tree_mb']:.0f} MiB / {many['peak_tree_mb']:.0f} MiB"),
        ("largest single process (ru_maxrss of children)", f"{many['max_child_mb']:.0f} MiB"),
        ("attack submissions scoring 0 on their targeted questions", attacks),
    ]
    print("| measure | value |")
    print("| --- | --- |")
    for name, value in results:
        print(f"| {name} | {value} |")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(dict(results), indent=2) + "\n", encoding="utf-8")
    return 0 if full == expected_full else 1


if __name__ == "__main__":
    sys.exit(main())
