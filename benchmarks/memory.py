"""Peak resident memory of a process tree, sampled in a background thread (shared by the benchmarks).

    with PeakRSS(psutil.Process(pid)) as rss:
        ...                        # the work to measure
    rss.peak                       # bytes

Sampling misses spikes shorter than the interval (50 ms); for the small, steady programs
of this course that is well within the noise of the measurement.
"""

from __future__ import annotations

import threading

import psutil


def tree_rss(root: psutil.Process, include_root: bool = True, exclude_names: tuple[str, ...] = ()) -> int:
    """Resident memory of ``root``'s descendants (and of ``root`` itself unless told not to), in bytes."""
    try:
        members = ([root] if include_root else []) + root.children(recursive=True)
    except psutil.Error:
        return 0
    total = 0
    for member in members:
        try:
            if member.name() not in exclude_names:
                total += member.memory_info().rss
        except psutil.Error:
            pass
    return total


class PeakRSS:
    """Context manager that records the largest :func:`tree_rss` seen while it is open."""

    def __init__(self, root: psutil.Process, include_root: bool = True, exclude_names: tuple[str, ...] = (),
                 interval: float = 0.05):
        self.root, self.include_root, self.exclude_names, self.interval = root, include_root, exclude_names, interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.root, self.include_root, self.exclude_names))
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
