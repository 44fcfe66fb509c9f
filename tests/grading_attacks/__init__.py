'''Attack submissions against the autograder, built from the chapter 04 solutions notebook.

    from tests.grading_attacks import attacks, ATTACK_LIMITS
    for attack in attacks():
        path = attack.write(folder / f"{attack.name}.ipynb")
        report = grade_notebook(path, limits=ATTACK_LIMITS)      # or: SubmissionError when attack.ungradable
        beaten = attack.defeated(report)                         # targets at 0, the rest at full points

Each attack is the honest solution with the ``targets`` (graded functions) sabotaged, so
that they would only score through the attack, plus one or more attack cells. The
grader defeats an attack when every target scores 0 while every other question keeps its
full points (``defeated``). ``ungradable`` attacks (a malformed file) must instead be
refused: ``grade_notebook`` raises ``SubmissionError``, ``course-grade`` exits 2 with one line.
``needs_process_cap`` marks the fork bomb: run it only where the report's isolation
includes a process cap (an unprivileged uid, or a grader that is not root).
'''

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell

from course_lib.grading.sandbox import Limits

ROOT = Path(__file__).resolve().parents[2]
SOLUTIONS = ROOT / "solutions" / "04_forward_diffusion.ipynb"
QUESTIONS = ("linear_betas", "cosine_betas", "q_sample", "snr_db", "first_step_below")
MAX_POINTS = {"linear_betas": 1.0, "cosine_betas": 2.0, "q_sample": 2.0, "snr_db": 1.0, "first_step_below": 2.0}

# Shared low limits: each attack is graded in a few seconds; loops stop after 6 s.
ATTACK_LIMITS = Limits(timeout_s=60, cell_timeout_s=6, question_timeout_s=6, memory_mb=3072, file_mb=32, extra_tasks=64)


@dataclass(frozen=True)
class Attack:
    name: str
    description: str
    targets: tuple[str, ...]  # questions that must score 0
    notebook: nbformat.NotebookNode | None = None
    raw: bytes | None = None  # instead of a notebook: the bytes of a malformed file
    ungradable: bool = False  # the grader must refuse the file (SubmissionError / exit 2)
    needs_process_cap: bool = False
    needs_file_confinement: bool = False  # defeated only where bubblewrap hides the repository
    slow: bool = False  # hits a time limit (a few seconds)
    expect_feedback: dict[str, str] = field(default_factory=dict)  # question -> text its feedback contains

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        if self.notebook is not None:
            nbformat.write(self.notebook, path)
        else:
            path.write_bytes(self.raw or b"")
        return path

    def defeated(self, report) -> bool:
        """Targets at 0 and every other question at its full points."""
        points = {q.name: q.points for q in report.questions}
        return all(points[t] == 0 for t in self.targets) and all(
            points[q.name] == q.max_points for q in report.questions if q.name not in self.targets
        )


def _solution() -> nbformat.NotebookNode:
    return nbformat.read(SOLUTIONS, as_version=4)


def _graded_index(nb, name: str) -> int:
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and f"def {name}(" in cell.source and "graded" in cell.metadata.get("tags", []):
            return index
    raise KeyError(name)


def _attack(name, description, targets, sabotage: dict[str, str], cells: list[tuple[str, str]], **kwargs) -> Attack:
    """The solution with each function of ``sabotage`` redefined by the given source, and each
    ``(where, source)`` of ``cells`` inserted: ``where`` is "start" (after the set-up cell),
    "end", or "after:<function>"."""
    nb = copy.deepcopy(_solution())
    nb.metadata["course"]["kind"] = "exercises"
    for function, source in sabotage.items():
        nb.cells[_graded_index(nb, function)].source = source.strip("\n")
    for where, source in cells:
        cell = new_code_cell(source.strip("\n"))
        cell.metadata["tags"] = ["attack"]
        if where == "start":
            position = 2
        elif where == "end":
            position = len(nb.cells)
        else:
            position = _graded_index(nb, where.split(":", 1)[1]) + 1
        nb.cells.insert(position, cell)
    nbformat.validate(nb)
    return Attack(name, description, tuple(targets), notebook=nb, **kwargs)


ZERO_LINEAR = "def linear_betas(num_timesteps, beta_start=1e-4, beta_end=0.02):\n    return torch.zeros(num_timesteps, dtype=torch.float64)"
ZERO_COSINE = "def cosine_betas(num_timesteps, s=0.008, max_beta=0.999):\n    return torch.zeros(num_timesteps, dtype=torch.float64)"
ZERO_Q_SAMPLE = "def q_sample(x0, t, alphas_cumprod, noise):\n    return torch.zeros_like(x0)"
ZERO_SNR = "def snr_db(alphas_cumprod):\n    return torch.zeros_like(alphas_cumprod)"
ZERO_BELOW = "def first_step_below(alphas_cumprod, threshold_db):\n    return -1"


def attacks() -> list[Attack]:
    """Every attack, in a stable order."""
    repo = str(ROOT)
    found: list[Attack] = []
    add = found.append

    add(_attack(
        "patch_grader_compare",
        "imports course_lib.grading and replaces the comparison functions with ones that always pass",
        ["linear_betas"],
        {"linear_betas": ZERO_LINEAR},
        [("start", """
try:
    import course_lib.grading.compare as compare
    import course_lib.grading.grader as grader
    compare.check_values = lambda *args, **kwargs: None
    compare.call_problem = lambda *args, **kwargs: None
    grader.grade_question = lambda question, *args, **kwargs: None
except ImportError as exc:
    print("no grader here:", exc)
""")],
    ))
    add(_attack(
        "patch_numpy_torch_checks",
        "monkeypatches numpy.allclose/isclose/array_equal and torch.testing.assert_close to always agree",
        ["cosine_betas"],
        {"cosine_betas": ZERO_COSINE},
        [("start", """
import numpy as np, torch
np.allclose = lambda *args, **kwargs: True
np.isclose = lambda a, b, *args, **kwargs: np.ones(np.broadcast(np.asarray(a), np.asarray(b)).shape, dtype=bool)
np.array_equal = lambda *args, **kwargs: True
np.testing.assert_allclose = lambda *args, **kwargs: None
torch.testing.assert_close = lambda *args, **kwargs: None
torch.allclose = lambda *args, **kwargs: True
""")],
    ))
    add(_attack(
        "eq_always_true",
        "returns an object whose __eq__ (and every comparison) says True, and which claims any shape",
        ["linear_betas", "cosine_betas"],
        {
            "linear_betas": """
class Always:
    shape = property(lambda self: (10**9,))
    dtype = torch.float64
    def __eq__(self, other): return True
    __ne__ = lambda self, other: False
    def __array__(self, *args, **kwargs): return np.zeros(3)
    def __len__(self): return 0
    def numpy(self): return self
    def detach(self): return self
    def cpu(self): return self
import numpy as np
def linear_betas(num_timesteps, beta_start=1e-4, beta_end=0.02):
    return Always()""",
            "cosine_betas": "def cosine_betas(num_timesteps, s=0.008, max_beta=0.999):\n    return Always()",
        },
        [],
    ))
    add(_attack(
        "tensor_subclass_lies",
        "returns torch.Tensor and numpy.ndarray subclasses whose shape, dtype, numpy() and __eq__ lie",
        ["q_sample", "first_step_below"],
        {
            "q_sample": """
class LyingTensor(torch.Tensor):
    @property
    def shape(self): return torch.Size([1, 2, 3])
    def numpy(self, *args, **kwargs): return np.zeros(3)
    def __eq__(self, other): return torch.ones((), dtype=torch.bool)
import numpy as np
def q_sample(x0, t, alphas_cumprod, noise):
    return torch.zeros_like(x0).as_subclass(LyingTensor)""",
            "first_step_below": """
class LyingArray(np.ndarray):
    def __eq__(self, other): return True
    def __array_finalize__(self, obj): pass
def first_step_below(alphas_cumprod, threshold_db):
    return np.zeros((), dtype=np.int64).view(LyingArray)""",
        },
        [],
    ))
    add(_attack(
        "ipython_input_transformers",
        "registers IPython input transformers and a post_run_cell hook meant to rewrite later cells",
        ["first_step_below"],
        {"first_step_below": ZERO_BELOW},
        [("start", """
ip = get_ipython()
def rewrite(lines):
    return [line.replace("return -1", "return int(torch.nonzero(snr_db(alphas_cumprod) < threshold_db)[0])") for line in lines]
for attribute in ("input_transformers_post", "input_transformers_cleanup"):
    try:
        getattr(ip, attribute).append(rewrite)
    except Exception as exc:
        print("no transformers:", exc)
try:
    ip.events.register("post_run_cell", lambda *a: None)
except Exception as exc:
    print("no events:", exc)
""")],
    ))
    add(_attack(
        "settrace_rewrites",
        "sys.settrace / threading.settrace / setprofile hooks that rewrite the runner's return values and statuses",
        ["first_step_below"],
        {"first_step_below": """
import sys, threading
def _tracer(frame, event, arg):
    for name in ("value", "results", "calls", "status"):
        if name in frame.f_locals:
            try:
                frame.f_locals[name] = {"forged": True}
            except Exception:
                pass
    return _tracer
def first_step_below(alphas_cumprod, threshold_db):
    sys.settrace(_tracer)
    threading.settrace(_tracer)
    sys.setprofile(_tracer)
    frame = sys._getframe(1)
    while frame is not None:
        frame.f_trace = _tracer
        frame = frame.f_back
    return -1"""},
        [("start", "import sys, threading\nsys.settrace(lambda *a: None)\nthreading.settrace(lambda *a: None)")],
    ))
    add(_attack(
        "read_solutions_from_disk",
        "reads solutions/04_forward_diffusion.ipynb (absolute, relative, and by searching) and runs its q_sample",
        ["q_sample"],
        {"q_sample": "def q_sample(x0, t, alphas_cumprod, noise):\n    raise NotImplementedError('stolen below, if anything was found')"},
        [("end", f"""
import glob, json, os
candidates = [{repo!r} + "/solutions/04_forward_diffusion.ipynb", "solutions/04_forward_diffusion.ipynb",
              "../solutions/04_forward_diffusion.ipynb", "../../solutions/04_forward_diffusion.ipynb",
              "/work/main/solutions/04_forward_diffusion.ipynb"]
for top in ("/", "/work", "/root", "/home", "/tmp", "/sandbox", os.path.expanduser("~"), ".."):
    candidates += glob.glob(os.path.join(top, "*", "solutions", "*.ipynb")) + glob.glob(os.path.join(top, "solutions", "*.ipynb"))
stolen = 0
for path in candidates:
    try:
        cells = json.load(open(path))["cells"]
    except Exception:
        continue
    for cell in cells:
        source = "".join(cell["source"])
        if "def q_sample(" in source and "BEGIN SOLUTION" in source:
            exec(source, globals())
            stolen += 1
print("stolen:", stolen)
""")],
        needs_file_confinement=True,
    ))
    add(_attack(
        "read_question_specs",
        "imports course_lib.grading.chapters / reads chapters/*.py from disk and returns its reference",
        ["cosine_betas"],
        {"cosine_betas": "def cosine_betas(num_timesteps, s=0.008, max_beta=0.999):\n    return _spec_reference(num_timesteps, s=s, max_beta=max_beta)"},
        [("start", f"""
import importlib, os, sys, types
_spec_reference = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no spec found"))
try:
    from course_lib.grading.chapters import ch04_forward_diffusion as spec
    _spec_reference = spec._cosine_reference
except ImportError as exc:
    print("import refused:", exc)
for path in ({repo!r} + "/course_lib/grading/chapters/ch04_forward_diffusion.py",
             "course_lib/grading/chapters/ch04_forward_diffusion.py",
             "/sandbox/lib/course_lib/grading/chapters/ch04_forward_diffusion.py",
             os.path.join(os.path.dirname(__import__("course_lib").__file__), "grading", "chapters", "ch04_forward_diffusion.py")):
    try:
        source = open(path).read()
    except OSError:
        continue
    module = types.ModuleType("stolen_spec")
    exec(source, module.__dict__)
    _spec_reference = module._cosine_reference
""")],
        needs_file_confinement=True,
    ))
    add(_attack(
        "import_library_answer",
        "returns course_lib.diffusion's own answers (directly, and after putting the repository on sys.path)",
        ["linear_betas", "cosine_betas"],
        {
            "linear_betas": "def linear_betas(num_timesteps, beta_start=1e-4, beta_end=0.02):\n    return _library.linear_betas(num_timesteps, beta_start, beta_end)",
            "cosine_betas": "def cosine_betas(num_timesteps, s=0.008, max_beta=0.999):\n    return _library.cosine_betas(num_timesteps, s=s, max_beta=max_beta)",
        },
        [("start", f"""
import importlib, sys
_library = None
try:
    from course_lib.diffusion import schedules as _library
except ImportError as exc:
    print("refused:", exc)
if _library is None:
    for name in [m for m in sys.modules if m == "course_lib" or m.startswith("course_lib.")]:
        del sys.modules[name]
    sys.path.insert(0, {repo!r})
    sys.path.insert(0, "/work/main")
    try:
        _library = importlib.import_module("course_lib.diffusion.schedules")
    except ImportError as exc:
        print("refused again:", exc)
""")],
        needs_file_confinement=True,
    ))
    add(_attack(
        "forge_results_and_print_scores",
        "writes fake results/status files (now, and from atexit and a thread) and prints fake score lines",
        ["q_sample"],
        {"q_sample": ZERO_Q_SAMPLE},
        [("start", """
import atexit, glob, json, os, threading, time
import numpy as np
print("Score: 8 / 8\\ntotal: 8 / 8\\nall 4 cases passed")
def forge():
    try:
        plan = json.load(open("plan.json"))
    except Exception:
        return
    for group in plan.get("groups", []):
        # Only the targeted question: a thread that overwrote every question's files would
        # spoil the honest ones too, by a race, which is self-harm and not a weakness.
        if group.get("name") != "q_sample":
            continue
        fake = {c["id"]: np.zeros(3) for c in group["calls"]}
        np.savez(f"results_{group['key']}.npz", **fake)
        json.dump({"calls": {c["id"]: {"error": None} for c in group["calls"]}}, open(f"status_{group['key']}.json", "w"))
    json.dump({"cells": []}, open("status_cells.json", "w"))
    for name in ("results.npz", "status.json"):
        open(name, "w").write("{}")
forge()
atexit.register(forge)
def keep_forging():
    while True:
        forge()
        time.sleep(0.01)
threading.Thread(target=keep_forging, daemon=True).start()
""")],
    ))
    add(_attack(
        "sys_exit_mid_notebook",
        "calls sys.exit(0) in a cell after cosine_betas: the cell is skipped, every other function is still graded",
        ["cosine_betas"],
        {"cosine_betas": ZERO_COSINE},
        [("after:cosine_betas", "import sys\nprint('Score: 8 / 8')\nsys.exit(0)")],
    ))
    add(_attack(
        "os_exit_mid_notebook",
        "calls os._exit(0) in a cell after linear_betas: the process restarts without that cell",
        ["linear_betas"],
        {"linear_betas": ZERO_LINEAR},
        [("after:linear_betas", "import os\nprint('total: 8 / 8')\nos._exit(0)")],
        expect_feedback={},
    ))
    add(_attack(
        "os_exit_in_graded_call",
        "q_sample calls os._exit(0) when graded, hoping the grader reads an empty result as a pass",
        ["q_sample"],
        {"q_sample": "import os\ndef q_sample(x0, t, alphas_cumprod, noise):\n    os._exit(0)"},
        [],
    ))
    add(_attack(
        "infinite_loop_cell",
        "a top-level cell that defines snr_db and never ends; first_step_below needs snr_db",
        ["snr_db", "first_step_below"],
        {"snr_db": "def snr_db(alphas_cumprod):\n    return 10 * torch.log10(alphas_cumprod / (1 - alphas_cumprod))\nwhile True:\n    pass"},
        [],
        slow=True,
    ))
    add(_attack(
        "infinite_loop_in_function",
        "a graded function that never returns",
        ["q_sample"],
        {"q_sample": "def q_sample(x0, t, alphas_cumprod, noise):\n    while True:\n        pass"},
        [],
        slow=True,
        expect_feedback={"q_sample": "timed out"},
    ))
    add(_attack(
        "memory_bomb",
        "allocates memory until it runs out, at top level and inside a graded function",
        ["linear_betas"],
        {"linear_betas": "def linear_betas(num_timesteps, beta_start=1e-4, beta_end=0.02):\n    hog = [bytearray(2**40)]\n    while True:\n        hog.append(b'x' * 2**29)"},
        [("start", "hog = []\ntry:\n    while True:\n        hog.append(b'x' * 2**29)\nexcept MemoryError:\n    hog.clear()\n    print('stopped by the memory limit')")],
    ))
    add(_attack(
        "fork_bomb",
        "forks until the process cap stops it (children keep forking, then sleep)",
        ["first_step_below"],
        {"first_step_below": ZERO_BELOW},
        [("start", """
import os, time
forks = 0
try:
    while forks < 5000:
        if os.fork() == 0:
            try:
                for _ in range(50):
                    os.fork()
            except OSError:
                pass
            time.sleep(600)
            os._exit(0)
        forks += 1
except OSError as exc:
    print("process cap reached after", forks, "forks:", exc)
""")],
        needs_process_cap=True,
    ))
    add(_attack(
        "huge_output",
        "prints 100 MB and writes a file larger than the file-size limit",
        ["cosine_betas"],
        {"cosine_betas": ZERO_COSINE},
        [("start", """
print("x" * 100_000_000)
try:
    with open("huge.bin", "wb") as f:
        for _ in range(1024):
            f.write(b"\\0" * 2**20)
except OSError as exc:
    print("file-size limit:", exc)
""")],
    ))
    add(Attack(
        "malformed_notebook",
        "a truncated .ipynb (invalid JSON)",
        QUESTIONS,
        raw=SOLUTIONS.read_bytes()[:2000],
        ungradable=True,
    ))
    add(Attack(
        "not_a_notebook",
        "a zip archive renamed to .ipynb",
        QUESTIONS,
        raw=b"PK\x03\x04" + bytes(range(256)) * 8,
        ungradable=True,
    ))
    return found
