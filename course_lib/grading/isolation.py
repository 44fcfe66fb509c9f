"""How the sandbox process is confined: the student view of the library, bubblewrap, the unprivileged uid.

* **Student view.** The submission imports ``course_lib`` (its set-up cell does), but must
  not see the grader or the library's own versions of the graded functions. For each
  grading, ``build_student_view`` copies ``course_lib`` into the scratch area *without*
  ``course_lib/grading`` and without the chapter's ``LIBRARY_ANSWERS`` (e.g.
  ``course_lib/diffusion`` for chapter 04): each is replaced by a stub whose import raises
  ``ModuleNotFoundError`` with a message. The runner is shipped next to it as the
  standalone file ``course_grade_runner.py``. This view comes first on ``sys.path``, the
  interpreter runs with ``-I -S`` (so the editable install's ``.pth`` finder, which maps
  ``course_lib`` to the repository, is never installed).
* **bubblewrap.** When ``bwrap`` is on ``PATH`` and works here, the process runs in new
  network, pid, IPC and UTS namespaces, with a root file system that holds only ``/usr``
  (and the ``/lib*``, ``/bin`` links), the dynamic loader's files in ``/etc``, the
  interpreter's and the virtual environment's prefixes (all read-only), the student view
  (read-only, ``/sandbox/lib``), the scratch directory (``/sandbox/work``, the only
  writable place besides a private ``/tmp``), ``/proc`` of its own pid namespace and a
  minimal ``/dev``. The repository, ``solutions/``, the question specs and the grader's
  home are not mounted at all.
* **Unprivileged uid.** ``RLIMIT_NPROC`` is not enforced for root. When the grader runs as
  root, the sandbox gives up root for a fresh, otherwise unused uid (and gid) before any
  student code runs, so the process cap holds and it counts only this submission's tasks.
  Under bubblewrap, bwrap itself runs as root (without a user namespace, keeping only
  ``CAP_SETUID``/``CAP_SETGID``) because the interpreter may live under a home directory
  that the unprivileged uid cannot traverse; the runner's first statement drops to the uid.
  Without bubblewrap, the drop happens only when the interpreter is readable by everyone.
* Otherwise: a plain subprocess with resource limits (``subprocess+rlimits``), and
  ``describe`` says what is missing.
"""

from __future__ import annotations

import functools
import os
import random
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds course_lib/
LIBRARY = PACKAGE_ROOT / "course_lib"
RUNNER_MODULE = "course_grade_runner"
SANDBOX_LIB = "/sandbox/lib"
SANDBOX_WORK = "/sandbox/work"
ALWAYS_HIDDEN = ("course_lib/grading",)
UID_RANGE = (1_100_000, 1_160_000)  # fresh uids for sandboxes: no user, file or process has them


@dataclass(frozen=True)
class Mode:
    """How the next sandbox process will be confined."""

    bubblewrap: str | None  # path of a working bwrap, or None
    drop_to_uid: bool  # the process gives up root for a fresh uid (so RLIMIT_NPROC holds)
    root: bool  # the grader runs as root
    note: str = ""  # why bubblewrap is not used, when it is not

    def describe(self) -> str:
        if self.bubblewrap:
            text = "bubblewrap (no network, pid namespace, private /tmp, read-only student view of the file system) + rlimits"
        else:
            text = "subprocess+rlimits"
        extras = []
        if self.drop_to_uid:
            extras.append("unprivileged uid")
        elif self.root:
            extras.append("runs as root: no process cap")
        if not self.bubblewrap:
            extras.append("file system and network not confined" + (f"; {self.note}" if self.note else ""))
        return text + (f" ({'; '.join(extras)})" if extras else "")


def _world_traversable(path: Path) -> bool:
    """Whether every directory from / down to ``path`` can be searched by any user."""
    path = path.resolve()
    for part in [path, *path.parents]:
        try:
            mode = part.stat().st_mode
        except OSError:
            return False
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            return False
    return True


def interpreter_paths() -> list[str]:
    """``sys.path`` for the sandbox's interpreter: this interpreter's entries that lie in its
    own prefixes (standard library, extension modules, site-packages), never the repository."""
    prefixes = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}
    kept = []
    for entry in sys.path:
        if not entry:
            continue
        real = os.path.realpath(entry)
        if any(real == p or real.startswith(p + os.sep) for p in prefixes) and real not in kept:
            if real == str(PACKAGE_ROOT) or real.startswith(str(LIBRARY)):
                continue
            kept.append(real)
    return kept


def _sandbox_ids() -> tuple[int, int]:
    """A uid (used as gid too) that no process on this machine has now."""
    used = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                used.add(entry.stat().st_uid)
            except OSError:
                pass
    while True:
        uid = random.randrange(*UID_RANGE)
        if uid not in used:
            return uid, uid


def build_student_view(dest: Path, hidden: tuple[str, ...]) -> None:
    """Copy ``course_lib`` into ``dest/course_lib`` without ``hidden`` (paths such as
    ``course_lib/diffusion``) and the grader; put the runner next to it."""
    hidden = tuple(ALWAYS_HIDDEN) + tuple(hidden)
    hidden_abs = {(PACKAGE_ROOT / h).resolve() for h in hidden}

    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = {n for n in names if n == "__pycache__" or n.endswith((".pyc", ".so", ".pyd"))}
        for name in names:
            target = (Path(folder) / name).resolve()
            if target in hidden_abs or target.with_suffix("") in hidden_abs and name.endswith(".py"):
                skipped.add(name)
        return skipped

    shutil.copytree(LIBRARY, dest / "course_lib", ignore=ignore, symlinks=False)
    for item in hidden:
        path = PACKAGE_ROOT / item
        dotted = item.removesuffix(".py").replace("/", ".")
        stub = (
            f"raise ModuleNotFoundError({dotted!r} + ' is not available while a notebook is graded: '\n"
            f"    'the grader withholds it (it holds answers or the grader itself)', name={dotted!r})\n"
        )
        target = dest / item
        if path.is_dir() or not item.endswith(".py"):
            target.mkdir(parents=True, exist_ok=True)
            (target / "__init__.py").write_text(stub, encoding="utf-8")
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(stub, encoding="utf-8")
    shutil.copyfile(Path(__file__).with_name("runner.py"), dest / f"{RUNNER_MODULE}.py")
    for folder, dirs, files in os.walk(dest):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = f"/{name}"
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"):
        args += ["--ro-bind-try", path, path]
    return args


def _python_binds() -> list[str]:
    """Read-only binds of the interpreter's prefixes (and anything on its path outside
    them), with world-searchable parent directories (bwrap would make them 0700)."""
    wanted = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}
    wanted.add(os.path.dirname(os.path.realpath(sys.executable)))
    wanted.update(interpreter_paths())
    roots: list[str] = []
    for path in sorted(wanted, key=len):
        if path.startswith("/usr/") or any(path == r or path.startswith(r + os.sep) for r in roots):
            continue
        roots.append(path)
    args, made = [], set()
    for root in roots:
        parents = list(reversed(Path(root).parents))[1:]  # without "/"
        for parent in parents:
            if str(parent) not in made:
                args += ["--perms", "0755", "--dir", str(parent)]
                made.add(str(parent))
        args += ["--ro-bind", root, root]
    return args


def bwrap_command(bwrap: str, root: bool, view: Path, work: Path, env: dict[str, str]) -> list[str]:
    """The bwrap prefix of the sandbox's command line (the Python command follows it)."""
    if root:  # no user namespace: bwrap keeps only what the drop to the sandbox's uid needs
        args = [bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        args = [bwrap, "--unshare-all"]
    args += ["--die-with-parent", "--new-session", "--clearenv"]
    # The private /tmp comes first: a virtual environment that lives under /tmp (a CI
    # checkout, say) is then bound on top of it instead of being hidden by it.
    args += ["--perms", "1777", "--tmpfs", "/tmp"]
    args += _system_binds() + _python_binds()
    args += ["--perms", "0755", "--dir", "/sandbox", "--ro-bind", str(view), SANDBOX_LIB, "--bind", str(work), SANDBOX_WORK]
    args += ["--proc", "/proc", "--dev", "/dev"]  # the runner chdirs after the drop
    for key, value in env.items():
        args += ["--setenv", key, value]
    return args


@functools.lru_cache(maxsize=None)
def _probe(bwrap: str, root: bool) -> str | None:
    """None when a Python under bwrap starts here (and can drop root), else why not."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="course-grade-probe-") as tmp:
        view, work = Path(tmp, "lib"), Path(tmp, "work")
        view.mkdir()
        work.mkdir()
        os.chmod(tmp, 0o711)
        code = "import os, sys; os.setgroups([]); os.setgid(1100000); os.setuid(1100000); print(os.getuid())" if root else "print(1)"
        command = bwrap_command(bwrap, root, view, work, {"PATH": "/usr/bin:/bin"})
        command += [sys.executable, "-I", "-S", "-c", code]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"bwrap failed to start ({exc})"
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
            return f"bwrap does not work here ({reason[:150]})"
    return None


@functools.lru_cache(maxsize=None)
def current_mode() -> Mode:
    """The confinement available on this machine (probed once per process).

    ``COURSE_GRADE_NO_BWRAP=1`` forces the fallback (for tests of it)."""
    root = os.geteuid() == 0
    note = ""
    bwrap = shutil.which("bwrap")
    if os.environ.get("COURSE_GRADE_NO_BWRAP") == "1":
        bwrap, note = None, "bubblewrap disabled by COURSE_GRADE_NO_BWRAP"
    elif bwrap is None:
        note = "install bubblewrap (bwrap) to confine them"
    else:
        problem = _probe(bwrap, root)
        if problem:
            bwrap, note = None, problem
    if bwrap:
        drop = root
    else:
        drop = root and all(_world_traversable(Path(p)) for p in (sys.base_prefix, sys.prefix, *interpreter_paths()))
    return Mode(bubblewrap=bwrap, drop_to_uid=drop, root=root, note=note)


def sandbox_ids(mode: Mode) -> tuple[int, int]:
    """(uid, gid) the sandbox drops to, or (-1, -1) for none."""
    return _sandbox_ids() if mode.drop_to_uid else (-1, -1)


def kill_uid(uid: int) -> None:
    """SIGKILL every process of ``uid`` (a fresh sandbox uid: only the sandbox's own)."""
    if uid < UID_RANGE[0]:
        return
    import signal

    for _ in range(3):
        found = False
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                if entry.stat().st_uid == uid:
                    found = True
                    os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                continue
        if not found:
            return
