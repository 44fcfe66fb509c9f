"""The untrusted side: executes a submission's cells and calls its graded functions.

This file runs inside the sandbox process, started by ``sandbox.run_sandbox``, as a
standalone module (copied into the sandbox's read-only student view of the library as
``course_grade_runner.py``; the rest of ``course_lib.grading`` is not there). It imports
only the standard library and numpy, and torch only if the submission itself did. It
reads from the scratch directory (its working directory)

* ``cells.json``  -- ``[{"index": i, "source": python}]``, already turned into plain Python,
* ``plan.json``   -- ``{"groups": [{"key": "g0", "name": question, "calls": [{"id", "function",
  "args": {name: {"array": key, "tensor": bool} | {"value": v}}}]}], "skip_cells": [i],
  "skip_groups": [key]}``,
* ``inputs.npz``  -- the arrays the plan refers to,

executes the cells one by one in one namespace (recording each cell's exception,
``SystemExit`` included, and going on), then makes each question's calls, and writes back
data only, as soon as each part is finished:

* ``status_cells.json`` -- ``{"cells": [{"index", "error", "message"}]}`` after the cells,
* ``results_<key>.npz`` -- one plain numeric array per successful call of a question, keyed by call id,
* ``status_<key>.json`` -- ``{"calls": {id: {"error": null | "missing" | "type" | "raised",
  "exception", "message"}}}`` for that question.

It reports progress on the file descriptor it is given (a pipe to the grader): lines
``cell <i> start``, ``cell <i> end``, ``question <key> start``, ``question <key> end``
and ``done``. The grader enforces its per-cell and per-question time limits from these
lines, and restarts the runner without a cell (or question) that hung or ended the
process. The grader trusts none of it: every value is checked against its own reference.

Everything the runner needs is bound when this module is imported, before any student
code runs, so that a cell that monkeypatches ``json``, ``numpy``, ``os`` or builtins does
not change how results are written (it can only spoil its own results).
"""

from __future__ import annotations

import builtins
import json
import os
import sys
import threading
import time

import numpy as np

CELLS_FILE = "cells.json"
PLAN_FILE = "plan.json"
INPUTS_FILE = "inputs.npz"
CELL_STATUS_FILE = "status_cells.json"
MAX_RESULT_ELEMENTS = 20_000_000
MAX_MESSAGE = 500

# Private references, taken before any student code runs.
_type, _isinstance, _str, _len, _open, _callable = type, isinstance, str, len, open, callable
_compile, _exec, _BaseException, _Exception = compile, exec, BaseException, Exception
_json_dump, _json_load = json.dump, json.load
_np_savez, _np_load, _np_array, _np_asarray = np.savez, np.load, np.array, np.asarray
_np_ndarray, _np_generic_types = np.ndarray, (np.bool_, np.integer, np.floating)
_os_replace, _os_write, _os_exit, _os_chdir = os.replace, os.write, os._exit, os.chdir
_sys_settrace, _sys_setprofile = sys.settrace, sys.setprofile
_th_settrace, _th_setprofile = threading.settrace, threading.setprofile
_monotonic = time.monotonic
_modules = sys.modules


def results_file(key: str) -> str:
    return f"results_{key}.npz"


def status_file(key: str) -> str:
    return f"status_{key}.json"


class _NoOp:
    def __call__(self, *args, **kwargs):
        return None


class StubIPython:
    """Stands in for ``get_ipython()``: magics and shell commands do nothing, and there are
    no input transformers or events through which a cell could rewrite later cells."""

    def system(self, cmd, *args, **kwargs):
        return 0

    def getoutput(self, cmd, *args, **kwargs):
        return []

    def run_line_magic(self, *args, **kwargs):
        return None

    def run_cell_magic(self, *args, **kwargs):
        return None

    def __getattr__(self, name):
        return _NoOp()


def _describe(exc: BaseException) -> dict:
    try:
        message = _str(exc)
    except _BaseException:
        message = ""
    try:
        name = _type(exc).__name__
        name = name if _type(name) is _str else "Exception"
    except _BaseException:
        name = "Exception"
    return {"error": name[:100], "message": message[:MAX_MESSAGE]}


class ResultTypeError(Exception):
    pass


def _clear_hooks() -> None:
    """No trace or profile function may see (or rewrite) what a graded call returns."""
    _sys_settrace(None)
    _sys_setprofile(None)
    _th_settrace(None)
    _th_setprofile(None)


def to_array(value) -> np.ndarray:
    """A result as a plain numeric numpy array; ``ResultTypeError`` for anything else.

    Only exact types are accepted (``torch.Tensor``, ``numpy.ndarray``, Python and numpy
    numbers), never subclasses, whose methods could lie about shape or values."""
    torch = _modules.get("torch")
    kind = f"{_type(value).__module__}.{_type(value).__qualname__}"
    if torch is not None and _type(value) is getattr(torch, "Tensor", None):
        try:
            array = torch.Tensor.numpy(torch.Tensor.cpu(torch.Tensor.detach(value)))
        except _Exception as exc:
            raise ResultTypeError(f"returned a tensor of dtype {value.dtype}, which numpy cannot hold ({exc})")
    elif _type(value) is _np_ndarray:
        array = value
    elif _type(value) in (int, float, bool) or (
        _isinstance(value, _np_generic_types) and _type(value).__module__ == "numpy"
    ):
        array = _np_asarray(value)
    else:
        raise ResultTypeError(f"returned a {kind}, expected a torch.Tensor or a numpy array")
    if _type(array) is not _np_ndarray:
        raise ResultTypeError(f"returned a {kind} that does not convert to a plain array")
    if array.dtype.kind not in "biuf":
        raise ResultTypeError(f"returned dtype {array.dtype}, expected real numbers")
    if array.size > MAX_RESULT_ELEMENTS:
        raise ResultTypeError(f"returned {array.size} numbers, more than the grader accepts")
    return _np_array(array, copy=True, order="C")


def _arguments(spec: dict, inputs) -> dict:
    kwargs = {}
    for name, arg in spec.items():
        if "array" in arg:
            value = _np_array(inputs[arg["array"]], copy=True)
            if arg.get("tensor"):
                import torch

                value = torch.from_numpy(value)
            kwargs[name] = value
        else:
            kwargs[name] = arg["value"]
    return kwargs


def _write_json(name: str, data) -> None:
    with _open(name + ".part", "w", encoding="utf-8") as f:
        _json_dump(data, f)
    _os_replace(name + ".part", name)


def _write_npz(name: str, arrays: dict) -> None:
    with _open(name + ".part", "wb") as f:
        _np_savez(f, **arrays)
    _os_replace(name + ".part", name)


def _call_group(group: dict, namespace: dict, inputs) -> tuple[dict, dict]:
    results, calls = {}, {}
    for call in group["calls"]:
        call_id, name = call["id"], call["function"]
        function = namespace.get(name)
        if function is None:
            calls[call_id] = {"error": "missing", "message": f"no function named {name} was defined"}
            continue
        if not _callable(function):
            calls[call_id] = {"error": "missing", "message": f"{name} is a {_type(function).__name__}, not a function"}
            continue
        try:
            kwargs = _arguments(call["args"], inputs)
            _clear_hooks()
            value = function(**kwargs)
            _clear_hooks()
            results[call_id] = to_array(value)
            calls[call_id] = {"error": None, "message": ""}
        except ResultTypeError as exc:
            _clear_hooks()
            calls[call_id] = {"error": "type", "message": _str(exc)[:MAX_MESSAGE]}
        except _BaseException as exc:
            _clear_hooks()
            described = _describe(exc)
            calls[call_id] = {"error": "raised", "exception": described["error"], "message": described["message"]}
    return results, calls


def main(scratch: str, progress_fd: int = -1) -> int:
    def progress(line: str) -> None:
        if progress_fd >= 0:
            try:
                _os_write(progress_fd, (line + "\n").encode("ascii"))
            except OSError:
                pass

    _os_chdir(scratch)
    with _open(CELLS_FILE, encoding="utf-8") as f:
        cells = _json_load(f)
    with _open(PLAN_FILE, encoding="utf-8") as f:
        plan = _json_load(f)
    with _np_load(INPUTS_FILE, allow_pickle=False) as data:
        inputs = {key: data[key] for key in data.files}
    groups = plan["groups"]
    skip_cells = set(plan.get("skip_cells", []))
    skip_groups = set(plan.get("skip_groups", []))

    shell = StubIPython()
    namespace = {
        "__name__": "__main__",
        "__builtins__": builtins,
        "get_ipython": lambda: shell,
        "display": lambda *args, **kwargs: None,
    }

    cell_errors = []
    for cell in cells:
        index = cell["index"]
        if index in skip_cells:
            continue
        progress(f"cell {index} start")
        try:
            code = _compile(cell["source"], f"<cell {index}>", "exec")
            _exec(code, namespace)
        except _BaseException as exc:  # a cell's failure (even SystemExit) must not stop the others
            cell_errors.append({"index": index, **_describe(exc)})
        _clear_hooks()
        progress(f"cell {index} end")
    _write_json(CELL_STATUS_FILE, {"cells": cell_errors})

    for group in groups:
        key = group["key"]
        if key in skip_groups:
            continue
        progress(f"question {key} start")
        results, calls = _call_group(group, namespace, inputs)
        _clear_hooks()
        _write_npz(results_file(key), results)
        _write_json(status_file(key), {"calls": calls})
        progress(f"question {key} end")
    progress("done")
    return 0


def boot() -> None:
    """Entry point, called by the sandbox's boot code (``sandbox._BOOT``) once it has set
    ``sys.path`` (the student view first) and given up root: ``argv = [scratch, progress_fd, ...]``.

    The process ends with ``os._exit``: no student ``atexit`` handler or thread runs after
    the results are written."""
    code = 1
    try:
        code = main(sys.argv[1], int(sys.argv[2]))
    finally:
        _os_exit(code)
