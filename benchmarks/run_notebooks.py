"""Time every notebook and measure its memory under a run profile; print a markdown table.

    python benchmarks/run_notebooks.py --profile smoke              # notebooks/ and solutions/
    python benchmarks/run_notebooks.py --profile gpu notebooks/04_forward_diffusion.ipynb
    python benchmarks/run_notebooks.py --profile cpu --json benchmarks/results/cpu.json

Each notebook runs in a fresh kernel (nbclient) with ``COURSE_PROFILE`` set and widgets
drawn as static figures. While it runs, a thread samples the resident memory of the
kernel's process tree every 50 ms and, where ``nvidia-smi`` exists, the GPU memory in use
(reported above the level measured just before the kernel started, so it includes other
processes on the same GPU only if they grow meanwhile). The notebooks on disk are never
written; ``--save DIR`` keeps executed copies elsewhere.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import psutil
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from memory import PeakRSS

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_GLOBS = ("notebooks/*.ipynb", "solutions/*.ipynb")
COMMITTED = ("notebooks", "exercises", "solutions")


def _gpu_used_mb() -> float | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
        return float(sum(float(line) for line in out.split() if line.strip()))
    except (subprocess.SubprocessError, ValueError, OSError):
        return None


class Sampler:
    """Peak RSS of this process's descendants (the kernel and what it starts) and peak GPU
    memory (as often as nvidia-smi allows)."""

    def __init__(self):
        self.rss = PeakRSS(psutil.Process(), include_root=False, exclude_names=("nvidia-smi",))
        self.gpu_baseline = _gpu_used_mb()
        self.peak_gpu = self.gpu_baseline
        self._stop = threading.Event()
        self._gpu_thread = threading.Thread(target=self._gpu_loop, daemon=True) if self.gpu_baseline is not None else None

    def _gpu_loop(self):
        while not self._stop.is_set():
            used = _gpu_used_mb()
            if used is not None:
                self.peak_gpu = max(self.peak_gpu, used)
            self._stop.wait(0.2)

    def __enter__(self):
        self.rss.__enter__()
        if self._gpu_thread is not None:
            self._gpu_thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._gpu_thread is not None:
            self._gpu_thread.join(timeout=15)
        self.rss.__exit__(*exc)

    @property
    def peak_rss(self) -> int:
        return self.rss.peak

    @property
    def gpu_mb(self) -> float | None:
        if self.gpu_baseline is None:
            return None
        return max(0.0, self.peak_gpu - self.gpu_baseline)


def run_notebook(path: Path, profile: str, timeout: int) -> dict:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", allow_errors=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    status = "ok"
    start = time.perf_counter()
    with Sampler() as sampler:
        try:
            client.execute()
        except CellTimeoutError:
            status = f"timeout (> {timeout} s in one cell)"
        except CellExecutionError as exc:
            status = f"error: {exc.ename}"
        except DeadKernelError:
            status = "kernel died (out of memory?)"
        except Exception as exc:  # noqa: BLE001 - report, then go on with the next notebook
            status = f"error: {type(exc).__name__}"
    wall = time.perf_counter() - start
    return {
        "notebook": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
        "profile": profile,
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(sampler.peak_rss / 2**20, 1),
        "peak_gpu_mb": None if sampler.gpu_mb is None else round(sampler.gpu_mb, 1),
        "status": status,
        "_nb": nb,
    }


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| notebook | profile | wall s | peak RSS MB | peak GPU MB | status |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        gpu = "—" if r["peak_gpu_mb"] is None else f"{r['peak_gpu_mb']:.0f}"
        lines.append(
            f"| {r['notebook']} | {r['profile']} | {r['wall_s']:.1f} | {r['peak_rss_mb']:.0f} | {gpu} | {r['status']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to run (default: notebooks/*.ipynb and solutions/*.ipynb)")
    parser.add_argument("--profile", choices=("smoke", "cpu", "gpu"), default="smoke")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell (default 1800)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument("--save", type=Path, help="write the executed notebooks into this folder (never into the committed ones)")
    args = parser.parse_args(argv)

    paths = [p.resolve() for p in args.notebooks] or [p for g in DEFAULT_GLOBS for p in sorted(ROOT.glob(g))]
    if not paths:
        print("no notebooks to run", file=sys.stderr)
        return 2
    if args.save is not None:
        save = args.save.resolve()
        if any(save == (ROOT / d) or save.is_relative_to(ROOT / d) for d in COMMITTED):
            parser.error(f"--save {args.save} is inside a folder of committed notebooks; choose another folder")
        save.mkdir(parents=True, exist_ok=True)

    # The kernels inherit this environment.
    os.environ["COURSE_PROFILE"] = args.profile
    os.environ["COURSE_STATIC_FIGURES"] = "1"
    os.environ.pop("MPLBACKEND", None)

    rows = []
    for path in paths:
        print(f"running {path.name} ({args.profile}) ...", file=sys.stderr, flush=True)
        row = run_notebook(path, args.profile, args.timeout)
        nb = row.pop("_nb")
        if args.save is not None:
            nbformat.write(nb, args.save.resolve() / f"{path.parent.name}__{path.name}")
        rows.append(row)
        print(f"  {row['status']}, {row['wall_s']:.1f} s", file=sys.stderr, flush=True)

    print(markdown_table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"python": sys.version.split()[0], "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}
        args.json.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n", encoding="utf-8")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
