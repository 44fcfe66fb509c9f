"""Running a submission in a separate, confined process and reading back data only.

The trusted grader writes plain Python cells, a call plan and the input arrays into a
fresh scratch directory, builds the student view of the library next to it (see
``isolation``), and runs the standalone runner there:

* under bubblewrap when it works here (no network, own pid namespace, only the
  interpreter, the student view and the scratch directory mounted), else as a plain
  subprocess; ``python -I -S`` either way, the student view first on ``sys.path``;
* as a fresh unprivileged uid when the grader is root, so that the task cap holds;
* with a scrubbed environment (PATH, LANG, HOME = the scratch directory, the smoke
  profile, the Agg backend, one thread), stdin/stdout/stderr closed to the grader;
* in a new session, killed as a whole (process group, pid namespace, uid) at a limit;
* with resource limits: CPU seconds, address space, file size, number of tasks, no core files.

Time limits. The runner reports progress on a pipe (``cell i start``/``end``,
``question g start``/``end``, ``done``) and writes each question's results as soon as its
calls return. The grader kills the sandbox when a cell runs longer than
``Limits.cell_timeout_s``, a question longer than ``Limits.question_timeout_s``, or the
whole notebook longer than ``Limits.timeout_s``; and when a cell ends the process
(``os._exit``, a crash, a signal). It then starts the runner again without that cell (a
question that hung or killed the process earns 0), keeping the questions already graded,
at most ``Limits.max_restarts`` times. An honest notebook runs in one process.

Afterwards it reads ``status_*.json`` and ``results_*.npz`` (regular files only,
size-capped, ``allow_pickle=False``) and nothing else. Every value is then checked by ``grader``.
"""

from __future__ import annotations

import io
import json
import math
import os
import resource
import select
import signal
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from course_lib.grading import isolation, runner

ISOLATION = "subprocess+rlimits"  # the weakest mode; GradeReport.isolation says which one was in force
MAX_STATUS_BYTES = 2**20
MAX_RESULTS_BYTES = 256 * 2**20
MAX_PROGRESS_LINE = 200
_BOOT = (
    "import os, sys\n"
    "sys.path[:] = sys.argv[5].split(os.pathsep)\n"
    "sys.dont_write_bytecode = True\n"
    "uid, gid = int(sys.argv[3]), int(sys.argv[4])\n"
    "if uid >= 0:\n"
    "    os.setgroups([]); os.setgid(gid); os.setuid(uid)\n"
    "    if os.getuid() != uid or os.geteuid() != uid or os.getgid() != gid:\n"
    "        os._exit(86)\n"
    "import course_grade_runner\n"
    "course_grade_runner.boot()\n"
)


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 120.0  # the whole notebook, restarts included
    memory_mb: int = 4096  # address space; torch imports in well under 2 GiB
    file_mb: int = 256
    extra_tasks: int = 64  # processes and threads beyond those the user already runs
    cell_timeout_s: float | None = None  # one cell; default: half of timeout_s
    question_timeout_s: float | None = None  # all calls of one question; default: a quarter of timeout_s
    max_restarts: int = 6  # runs after the first, each without a cell or question that failed the run

    @property
    def cell_limit(self) -> float:
        return self.cell_timeout_s if self.cell_timeout_s is not None else self.timeout_s / 2

    @property
    def question_limit(self) -> float:
        return self.question_timeout_s if self.question_timeout_s is not None else self.timeout_s / 4


@dataclass
class SandboxResult:
    """What came back. ``problem`` says why nothing came back at all; ``question_problems``
    (question name -> reason) why one question has no results (it hung, or ended the process)."""

    timed_out: bool
    returncode: int | None
    elapsed_s: float
    status: dict | None = None
    results: dict[str, np.ndarray] = field(default_factory=dict)
    problem: str | None = None
    question_problems: dict[str, str] = field(default_factory=dict)
    isolation: str = ISOLATION
    runs: int = 1


def _user_tasks() -> int:
    """Processes and threads of this user now (RLIMIT_NPROC counts them all)."""
    uid, count = os.getuid(), 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", encoding="ascii", errors="replace") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                count += int(fields["Threads"])
        except (OSError, KeyError, ValueError):
            continue
    return count


def _limit_setter(limits: Limits, max_tasks: int, cpu_s: float):
    cpu = math.ceil(cpu_s) + 2
    wanted = {
        resource.RLIMIT_CPU: (cpu, cpu + 5),
        resource.RLIMIT_AS: (limits.memory_mb * 2**20,) * 2,
        resource.RLIMIT_FSIZE: (limits.file_mb * 2**20,) * 2,
        resource.RLIMIT_NPROC: (max_tasks,) * 2,
        resource.RLIMIT_CORE: (0, 0),
    }

    def apply() -> None:  # runs in the child between fork and exec
        for which, (soft, hard) in wanted.items():
            _, old_hard = resource.getrlimit(which)
            if old_hard != resource.RLIM_INFINITY:
                soft, hard = min(soft, old_hard), min(hard, old_hard)
            resource.setrlimit(which, (soft, hard))

    return apply


def _environment(home: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": home,
        "COURSE_PROFILE": "smoke",
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }


def _read_regular(path: Path, max_bytes: int) -> bytes | None:
    """The bytes of ``path`` if it is a regular file (not a link, FIFO or device) of at most ``max_bytes``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            return None
        data = f.read(max_bytes + 1)
    return data if len(data) <= max_bytes else None


def _load_results(data: bytes) -> dict[str, np.ndarray]:
    """Arrays of an ``.npz`` held in memory; ``ValueError`` on anything but plain numeric arrays."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = archive.infolist()
        if sum(m.file_size for m in members) > MAX_RESULTS_BYTES or any(not m.filename.endswith(".npy") for m in members):
            raise ValueError("unexpected results archive")
    arrays = {}
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        for key in npz.files:
            array = npz[key]
            if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
                raise ValueError(f"result {key!r} is not a numeric array")
            arrays[key] = array
    return arrays


def _read_json(path: Path) -> dict | None:
    raw = _read_regular(path, MAX_STATUS_BYTES)
    if raw is None:
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _exit_reason(returncode: int | None) -> str:
    if returncode is None:
        return "was stopped"
    if returncode < 0:
        return {
            signal.SIGXCPU: "ran out of CPU time",
            signal.SIGKILL: "was killed (out of memory?)",
            signal.SIGSEGV: "crashed (segmentation fault)",
            signal.SIGXFSZ: "wrote a file larger than allowed",
        }.get(-returncode, f"was stopped by signal {-returncode}")
    return f"ended (exit code {returncode})"


def _exit_problem(returncode: int) -> str:
    return f"the notebook's process {_exit_reason(returncode)} before returning results"


@dataclass
class _Run:
    """What one run of the runner did, from its progress lines."""

    returncode: int | None = None
    done: bool = False
    phase: tuple[str, str] | None = None  # ("cell", "3") or ("question", "g1") in progress at the end
    stopped: str | None = None  # "phase" (a cell or question ran too long) or "notebook"
    saw_cells_end: bool = False


def _watch(process: subprocess.Popen, progress_fd: int, limits: Limits, deadline: float) -> _Run:
    """Follow the runner's progress until it ends or a limit is reached (then kill it)."""
    run, buffer, phase_start, done_at = _Run(), b"", 0.0, 0.0
    os.set_blocking(progress_fd, False)
    while True:
        ready, _, _ = select.select([progress_fd], [], [], 0.05)
        if ready:
            try:
                chunk = os.read(progress_fd, 65536)
            except BlockingIOError:
                chunk = b""
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            buffer = buffer[-MAX_PROGRESS_LINE:]
            for raw in lines:
                parts = raw[:MAX_PROGRESS_LINE].decode("ascii", "replace").split()
                if parts == ["done"]:
                    run.done = True
                elif len(parts) == 3 and parts[0] in ("cell", "question") and parts[2] in ("start", "end"):
                    if parts[2] == "start":
                        run.phase, phase_start = (parts[0], parts[1]), time.monotonic()
                    elif run.phase == (parts[0], parts[1]):
                        run.phase = None
        returncode = process.poll()
        if returncode is not None:
            run.returncode = returncode
            return run
        now = time.monotonic()
        if run.done:  # the runner exits right after "done"; do not wait long on leftovers
            done_at = done_at or now
            if now - done_at > 2:
                return run
            continue
        limit = None
        if run.phase is not None:
            limit = limits.cell_limit if run.phase[0] == "cell" else limits.question_limit
        if now >= deadline:
            run.stopped = "notebook"
            return run
        if limit is not None and now - phase_start > limit:
            run.stopped = "phase"
            return run


def _kill(process: subprocess.Popen, uid: int) -> None:
    try:  # the whole group: children the submission started die too (and, under bwrap, its pid namespace)
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    isolation.kill_uid(uid)
    process.wait()


def _groups(plan: dict) -> list[dict]:
    """The plan's calls grouped by graded function: one group per question, in order."""
    groups: dict[str, dict] = {}
    for call in plan["calls"]:
        name = call["function"]
        if name not in groups:
            groups[name] = {"key": f"g{len(groups)}", "name": name, "calls": []}
        groups[name]["calls"].append(call)
    return list(groups.values())


def _collect_finished(work: Path, by_key: dict[str, dict], collected: dict[str, dict], outcome: SandboxResult):
    """Read back what one run finished: each question whose files it wrote goes into
    ``collected`` (its calls' statuses) and ``outcome.results``; returns the cells' errors,
    or None when the run never got past the cells."""
    for key, group in by_key.items():
        if key in collected:
            continue
        status = _read_json(work / runner.status_file(key))
        raw = _read_regular(work / runner.results_file(key), MAX_RESULTS_BYTES)
        if status is None and raw is None:
            continue
        try:
            if status is None or raw is None or not isinstance(status.get("calls"), dict):
                raise ValueError("incomplete")
            arrays = _load_results(raw)
        except Exception:
            outcome.question_problems[group["name"]] = "the notebook's process returned malformed results"
            collected[key] = {}
            continue
        ids = {c["id"] for c in group["calls"]}
        collected[key] = {k: v for k, v in status["calls"].items() if k in ids}
        outcome.results.update({k: v for k, v in arrays.items() if k in ids})
    cell_status = _read_json(work / runner.CELL_STATUS_FILE)
    if cell_status is not None and isinstance(cell_status.get("cells"), list):
        return cell_status["cells"]
    return None


def run_sandbox(cells: list[dict], plan: dict, inputs: dict[str, np.ndarray], limits: Limits = Limits(), hidden: tuple[str, ...] = ()) -> SandboxResult:
    """Execute ``cells`` and the calls of ``plan`` in a confined subprocess; return the data it sent back.

    ``hidden`` names library paths (``course_lib/diffusion``) left out of the student view."""
    mode = isolation.current_mode()
    uid, gid = isolation.sandbox_ids(mode)
    max_tasks = limits.extra_tasks if uid >= 0 else _user_tasks() + limits.extra_tasks
    groups = _groups(plan)
    by_key = {g["key"]: g for g in groups}
    start = time.monotonic()
    deadline = start + limits.timeout_s
    outcome = SandboxResult(timed_out=False, returncode=None, elapsed_s=0.0, isolation=mode.describe(), runs=0)
    skip_cells: dict[int, dict] = {}  # cell index -> the error recorded for it
    collected: dict[str, dict] = {}  # group key -> its calls' statuses
    cell_errors: list[dict] | None = None
    with tempfile.TemporaryDirectory(prefix="course-grade-", ignore_cleanup_errors=True) as tmp:
        top = Path(tmp)
        os.chmod(top, 0o711)
        view, work = top / "lib", top / "work"
        work.mkdir()
        isolation.build_student_view(view, hidden)
        (work / runner.CELLS_FILE).write_text(json.dumps(cells), encoding="utf-8")
        np.savez(work / runner.INPUTS_FILE, **inputs)
        for path in work.iterdir():
            os.chmod(path, 0o644)
        if uid >= 0:
            os.chown(work, uid, gid)
        os.chmod(work, 0o700)
        inner_work, inner_lib = (isolation.SANDBOX_WORK, isolation.SANDBOX_LIB) if mode.bubblewrap else (str(work), str(view))
        env = _environment(inner_work)
        python_path = os.pathsep.join([inner_lib, *isolation.interpreter_paths()])

        while True:
            outcome.runs += 1
            skip_groups = [k for k in by_key if k in collected or groups[int(k[1:])]["name"] in outcome.question_problems]
            run_plan = {"groups": groups, "skip_cells": sorted(skip_cells), "skip_groups": skip_groups}
            plan_path = work / runner.PLAN_FILE
            plan_path.unlink(missing_ok=True)
            plan_path.write_text(json.dumps(run_plan), encoding="utf-8")
            os.chmod(plan_path, 0o644)
            for name in [runner.CELL_STATUS_FILE] + [runner.status_file(k) for k in by_key] + [runner.results_file(k) for k in by_key]:
                try:
                    os.unlink(work / name)
                except OSError:
                    pass
            read_fd, write_fd = os.pipe()
            command = [sys.executable, "-I", "-S", "-c", _BOOT, inner_work, str(write_fd), str(uid), str(gid), python_path]
            if mode.bubblewrap:
                command = isolation.bwrap_command(mode.bubblewrap, mode.root, view, work, env) + command
            remaining = max(deadline - time.monotonic(), 0.1)
            try:
                process = subprocess.Popen(
                    command,
                    cwd=work,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=None if os.environ.get("COURSE_GRADE_DEBUG") == "1" else subprocess.DEVNULL,
                    start_new_session=True,
                    close_fds=True,
                    pass_fds=(write_fd,),
                    preexec_fn=_limit_setter(limits, max_tasks, remaining),
                )
            finally:
                os.close(write_fd)
            try:
                run = _watch(process, read_fd, limits, deadline)
            finally:
                os.close(read_fd)
                _kill(process, uid)
            outcome.returncode = process.returncode

            finished_cells = _collect_finished(work, by_key, collected, outcome)
            if finished_cells is not None:
                cell_errors = finished_cells

            pending = [k for k in by_key if k not in collected and by_key[k]["name"] not in outcome.question_problems]
            if run.done and run.returncode in (0, None) or not pending:
                break
            if run.stopped == "notebook":
                outcome.timed_out = True
                for key in pending:
                    outcome.question_problems[by_key[key]["name"]] = f"timed out after {limits.timeout_s:g} s"
                break
            phase = run.phase
            if run.stopped == "phase":
                outcome.timed_out = True
            if phase is not None and phase[0] == "cell" and phase[1].lstrip("-").isdigit():
                index = int(phase[1])
                if run.stopped == "phase":
                    message = f"stopped after {limits.cell_limit:g} s (the cell's time limit); the grader skipped it"
                    skip_cells[index] = {"index": index, "error": "TimeoutError", "message": message}
                else:
                    message = f"the process {_exit_reason(run.returncode)} in this cell; the grader skipped it"
                    skip_cells[index] = {"index": index, "error": "ProcessExit", "message": message}
            elif phase is not None and phase[0] == "question" and phase[1] in by_key:
                name = by_key[phase[1]]["name"]
                if run.stopped == "phase":
                    outcome.question_problems[name] = f"timed out after {limits.question_limit:g} s"
                else:
                    outcome.question_problems[name] = f"the notebook's process {_exit_reason(run.returncode)} while {name} ran"
            else:  # died outside any cell or question: nothing to skip, so no point in another run
                outcome.problem = _exit_problem(run.returncode if run.returncode is not None else -9)
                break
            if outcome.runs > limits.max_restarts or time.monotonic() >= deadline:
                reason = f"gave up after {outcome.runs} runs of the notebook" if outcome.runs > limits.max_restarts else f"timed out after {limits.timeout_s:g} s"
                outcome.timed_out = outcome.timed_out or time.monotonic() >= deadline
                for key in by_key:
                    if key not in collected and by_key[key]["name"] not in outcome.question_problems:
                        outcome.question_problems[by_key[key]["name"]] = reason
                break

    outcome.elapsed_s = round(time.monotonic() - start, 2)
    calls: dict[str, dict] = {}
    for statuses in collected.values():
        calls.update(statuses)
    merged_cells = list(cell_errors or []) + list(skip_cells.values())
    merged_cells.sort(key=lambda c: c.get("index", 0) if isinstance(c, dict) and isinstance(c.get("index"), int) else 0)
    outcome.status = {"cells": merged_cells, "calls": calls}
    if outcome.problem is None and not collected and len(outcome.question_problems) == len(by_key) and by_key:
        reasons = set(outcome.question_problems.values())
        if len(reasons) == 1:
            outcome.problem = reasons.pop()
    return outcome
