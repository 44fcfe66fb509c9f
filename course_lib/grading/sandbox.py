"""Running a submission in a separate, limited process and reading back data only.

The trusted grader writes plain Python cells, a call plan and the input arrays into a
fresh scratch directory, then runs ``course_lib.grading.runner`` there with

* ``python -I`` (no user site, no ``PYTHON*`` variables, cwd not on ``sys.path``),
* a scrubbed environment (PATH, LANG, HOME = the scratch directory, the smoke profile,
  the Agg backend, one thread) and stdin/stdout closed to the grader,
* a new session, killed as a whole process group at the wall-clock timeout,
* resource limits: CPU seconds, address space, file size, number of tasks, no core files.

Afterwards it reads ``status.json`` and ``results.npz`` (regular files only, size-capped,
``allow_pickle=False``) and nothing else. Every value is then checked by ``grader``.
"""

from __future__ import annotations

import io
import json
import math
import os
import resource
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

from course_lib.grading import runner

ISOLATION = "subprocess+rlimits"
MAX_STATUS_BYTES = 2**20
MAX_RESULTS_BYTES = 256 * 2**20
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[2]); "
    "from course_lib.grading.runner import main; sys.exit(main(sys.argv[1]))"
)


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 120.0
    memory_mb: int = 4096  # address space; torch imports in well under 2 GiB
    file_mb: int = 256
    extra_tasks: int = 64  # processes and threads beyond those the user already runs


@dataclass
class SandboxResult:
    """What came back: ``problem`` says why nothing did (timeout, crash, malformed data)."""

    timed_out: bool
    returncode: int | None
    elapsed_s: float
    status: dict | None = None
    results: dict[str, np.ndarray] = field(default_factory=dict)
    problem: str | None = None


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


def _limit_setter(limits: Limits, max_tasks: int):
    cpu = math.ceil(limits.timeout_s) + 2
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


def _environment(scratch: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "HOME": scratch,
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


def _exit_problem(returncode: int) -> str:
    if returncode < 0:
        reason = {
            signal.SIGXCPU: "ran out of CPU time",
            signal.SIGKILL: "was killed (out of memory?)",
            signal.SIGSEGV: "crashed (segmentation fault)",
            signal.SIGXFSZ: "wrote a file larger than allowed",
        }.get(-returncode, f"was stopped by signal {-returncode}")
        return f"the notebook's process {reason} before returning results"
    return f"the notebook's process ended (exit code {returncode}) before returning results; does a cell call exit()?"


def run_sandbox(cells: list[dict], plan: dict, inputs: dict[str, np.ndarray], limits: Limits = Limits()) -> SandboxResult:
    """Execute ``cells`` and the calls of ``plan`` in a limited subprocess; return the data it sent back."""
    max_tasks = _user_tasks() + limits.extra_tasks
    with tempfile.TemporaryDirectory(prefix="course-grade-", ignore_cleanup_errors=True) as scratch:
        root = Path(scratch)
        (root / runner.CELLS_FILE).write_text(json.dumps(cells), encoding="utf-8")
        (root / runner.PLAN_FILE).write_text(json.dumps(plan), encoding="utf-8")
        np.savez(root / runner.INPUTS_FILE, **inputs)
        start = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-I", "-c", _BOOT, scratch, _PACKAGE_ROOT],
            cwd=scratch,
            env=_environment(scratch),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            preexec_fn=_limit_setter(limits, max_tasks),
        )
        timed_out = False
        try:
            process.wait(timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            try:  # the whole group: children the submission started die too
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            process.wait()
        elapsed = round(time.monotonic() - start, 2)
        outcome = SandboxResult(timed_out=timed_out, returncode=process.returncode, elapsed_s=elapsed)
        if timed_out:
            outcome.problem = f"timed out after {limits.timeout_s:g} s"
            return outcome
        raw_status = _read_regular(root / runner.STATUS_FILE, MAX_STATUS_BYTES)
        raw_results = _read_regular(root / runner.RESULTS_FILE, MAX_RESULTS_BYTES)
        if raw_status is None or raw_results is None:
            outcome.problem = _exit_problem(process.returncode)
            return outcome
        try:
            status = json.loads(raw_status.decode("utf-8"))
            if not isinstance(status, dict):
                raise ValueError("status is not an object")
            outcome.results = _load_results(raw_results)
            outcome.status = status
        except Exception:
            outcome.problem = "the notebook's process returned malformed results"
        return outcome
