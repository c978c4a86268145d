"""Peak memory of a fit: the most the process's resident set grew above where it started.

``tracemalloc`` sees only Python's own allocator: numba's arrays (the BPR and ALS kernels), BLAS buffers
and torch tensors are invisible to it (a BPR fit read 1 MB), and tracing slows torch models 3-4×. The
resident set size sees every allocation; a thread samples it while the fit runs. Before the fit, freed
memory is handed back to the system (``malloc_trim``), so a fit that reuses memory freed by the previous
one still shows what it needed.
"""

from __future__ import annotations

import ctypes
import gc
import sys
import threading

import psutil


def _trim() -> None:
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:  # another libc: the sample is a little lower, never wrong in kind
            pass


class PeakMemory:
    """``with PeakMemory() as peak: fit()`` then ``peak.mb``: the largest rise of the resident set, MB."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.mb = float("nan")
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = self._peak = 0

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakMemory:
        _trim()
        self._start = self._peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._peak = max(self._peak, self._process.memory_info().rss)
        self.mb = (self._peak - self._start) / 2**20
