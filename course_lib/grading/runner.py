"""The untrusted side: executes a submission's cells and calls its graded functions.

This module runs inside the sandbox process (``python -I``, scratch directory as cwd,
resource limits, scrubbed environment), started by ``sandbox.run_sandbox``. It reads
from the scratch directory

* ``cells.json``  -- ``[{"index": i, "source": python}]``, already turned into plain Python,
* ``plan.json``   -- ``{"calls": [{"id", "function", "args": {name: {"array": key, "tensor": bool}
  | {"value": v}}}]}``,
* ``inputs.npz``  -- the arrays the plan refers to,

executes the cells one by one in one namespace (recording each cell's exception and
going on), makes each planned call, and writes back data only:

* ``results.npz`` -- one plain numeric array per successful call, keyed by call id,
* ``status.json`` -- ``{"cells": [{"index", "error", "message"}], "calls": {id: {"error":
  null | "missing" | "type" | "raised", "exception", "message"}}, "elapsed_s"}``.

The grader trusts none of it: it reads both files as data and checks every value
against its own reference. Only the standard library and numpy are imported here;
torch is used only if the submission itself imported it.
"""

from __future__ import annotations

import builtins
import json
import os
import sys
import time

import numpy as np

CELLS_FILE = "cells.json"
PLAN_FILE = "plan.json"
INPUTS_FILE = "inputs.npz"
RESULTS_FILE = "results.npz"
STATUS_FILE = "status.json"
MAX_RESULT_ELEMENTS = 20_000_000
MAX_MESSAGE = 500


class _NoOp:
    def __call__(self, *args, **kwargs):
        return None


class StubIPython:
    """Stands in for ``get_ipython()``: magics and shell commands do nothing."""

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
        message = str(exc)
    except BaseException:
        message = ""
    return {"error": type(exc).__name__, "message": message[:MAX_MESSAGE]}


class ResultTypeError(Exception):
    pass


_NUMPY_SCALARS = (np.bool_, np.integer, np.floating)


def to_array(value) -> np.ndarray:
    """A result as a plain numeric numpy array; ``ResultTypeError`` for anything else."""
    torch = sys.modules.get("torch")
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    if torch is not None and type(value) is torch.Tensor:
        try:
            array = value.detach().cpu().numpy()
        except Exception as exc:
            raise ResultTypeError(f"returned a tensor of dtype {value.dtype}, which numpy cannot hold ({exc})")
    elif type(value) is np.ndarray:
        array = value
    elif type(value) in (int, float, bool) or (isinstance(value, _NUMPY_SCALARS) and type(value).__module__ == "numpy"):
        array = np.asarray(value)
    else:
        raise ResultTypeError(f"returned a {kind}, expected a torch.Tensor or a numpy array")
    if array.dtype.kind not in "biuf":
        raise ResultTypeError(f"returned dtype {array.dtype}, expected real numbers")
    if array.size > MAX_RESULT_ELEMENTS:
        raise ResultTypeError(f"returned {array.size} numbers, more than the grader accepts")
    return np.array(array, copy=True, order="C")


def _arguments(spec: dict, inputs) -> dict:
    kwargs = {}
    for name, arg in spec.items():
        if "array" in arg:
            value = np.array(inputs[arg["array"]], copy=True)
            if arg.get("tensor"):
                import torch

                value = torch.from_numpy(value)
            kwargs[name] = value
        else:
            kwargs[name] = arg["value"]
    return kwargs


def main(scratch: str) -> int:
    start = time.monotonic()
    os.chdir(scratch)
    with open(CELLS_FILE, encoding="utf-8") as f:
        cells = json.load(f)
    with open(PLAN_FILE, encoding="utf-8") as f:
        plan = json.load(f)
    with np.load(INPUTS_FILE, allow_pickle=False) as data:
        inputs = {key: data[key] for key in data.files}
    write_json, savez, replace = json.dump, np.savez, os.replace  # before any student code runs

    shell = StubIPython()
    namespace = {
        "__name__": "__main__",
        "__builtins__": builtins,
        "get_ipython": lambda: shell,
        "display": lambda *args, **kwargs: None,
    }

    cell_errors = []
    for cell in cells:
        try:
            code = compile(cell["source"], f"<cell {cell['index']}>", "exec")
            exec(code, namespace)
        except BaseException as exc:  # a cell's failure must not stop the others
            cell_errors.append({"index": cell["index"], **_describe(exc)})

    results, calls = {}, {}
    for call in plan["calls"]:
        call_id, name = call["id"], call["function"]
        function = namespace.get(name)
        if function is None:
            calls[call_id] = {"error": "missing", "message": f"no function named {name} was defined"}
            continue
        if not callable(function):
            calls[call_id] = {"error": "missing", "message": f"{name} is a {type(function).__name__}, not a function"}
            continue
        try:
            value = function(**_arguments(call["args"], inputs))
            results[call_id] = to_array(value)
            calls[call_id] = {"error": None, "message": ""}
        except ResultTypeError as exc:
            calls[call_id] = {"error": "type", "message": str(exc)[:MAX_MESSAGE]}
        except BaseException as exc:
            described = _describe(exc)
            calls[call_id] = {"error": "raised", "exception": described["error"], "message": described["message"]}

    with open(RESULTS_FILE + ".part", "wb") as f:
        savez(f, **results)
    replace(RESULTS_FILE + ".part", RESULTS_FILE)
    status = {"cells": cell_errors, "calls": calls, "elapsed_s": round(time.monotonic() - start, 3)}
    with open(STATUS_FILE + ".part", "w", encoding="utf-8") as f:
        write_json(status, f)
    replace(STATUS_FILE + ".part", STATUS_FILE)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
