"""What bounds a client's cost: token buckets charged by work, a throttle on wrong keys, and the heavy lane.

* A key's **bucket** is charged a request's cost (:attr:`mosaicrec.ranking.pipeline.Request.cost`: a plain
  top-10 costs 1, a 1,000-item diverse list about 21), not one per request, so a read key cannot buy the
  CPU of thousands of lists with the budget of hundreds.
* **Wrong keys** are throttled per client address: a few tries a second, then 429 until the bucket
  refills, so keys cannot be guessed at the speed of the server.
* The **heavy lane** runs lists above :data:`HEAVY_COST` in a small thread pool beside the event loop, a
  bounded number at a time: ``/health`` and cheap lists never queue behind them. A heavy list that finds
  the lane's queue full, or waits in it longer than ``max_wait_s``, is refused with 429 and ``Retry-After``
  rather than answered late.

Every 429 says when to come back (``Retry-After``, whole seconds).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mosaicrec.errors import MosaicError

#: lists costing more than this (in top-10 units) run in the heavy lane
HEAVY_COST = 4.0


class Busy(MosaicError):
    """Too much work in flight to take this request now (429, with ``retry_after`` seconds)."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def retry_header(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


class Bucket:
    """Token bucket: ``rate`` units per second with bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens, self.at = rate, burst, burst, time.monotonic()
        self.lock = threading.Lock()

    def take(self, cost: float = 1.0, charge: bool = True) -> float:
        """Charge ``cost``; 0 when admitted, else the seconds until it would be (nothing is charged). A
        cost above the burst is charged the whole burst: it is admitted when the bucket is full. With
        ``charge=False`` only says which."""
        cost = min(cost, self.burst)
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= cost:
                self.tokens -= cost if charge else 0.0
                return 0.0
            return (cost - self.tokens) / self.rate


class FailureThrottle:
    """Per client address, how many wrong keys it may present: ``rate`` a second, bursts of ``burst``. The
    addresses tracked are bounded (the least recently seen are forgotten first)."""

    def __init__(self, rate: float = 2.0, burst: float = 20.0, max_clients: int = 10_000) -> None:
        self.rate, self.burst, self.max_clients = rate, burst, max_clients
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def charge(self, client: str) -> None:
        """Count a wrong key from this client."""
        with self._lock:
            bucket = self._buckets.get(client)
            if bucket is None:
                bucket = self._buckets[client] = Bucket(self.rate, self.burst)
                while len(self._buckets) > self.max_clients:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(client)
        bucket.take()

    def peek(self, client: str) -> float:
        """Seconds until this client may try again, without charging (0 when it may now)."""
        with self._lock:
            bucket = self._buckets.get(client)
        return 0.0 if bucket is None else bucket.take(charge=False)


class HeavyLane:
    """Runs heavy work in ``workers`` threads beside the event loop, at most ``max_waiting`` queued, none
    queued longer than ``max_wait_s`` (see the module docstring)."""

    def __init__(self, workers: int = 2, max_waiting: int = 16, max_wait_s: float = 1.0) -> None:
        self.workers, self.max_waiting, self.max_wait_s = workers, max_waiting, max_wait_s
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="heavy")
        self._slots: asyncio.Semaphore | None = None
        self.waiting = 0

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._slots is None:  # made on the server's loop, on first use
            self._slots = asyncio.Semaphore(self.workers)
        if self.waiting >= self.max_waiting:
            raise Busy(f"{self.waiting} heavy requests are waiting; retry shortly, or ask for a shorter list")
        self.waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), self.max_wait_s)
        except TimeoutError:
            raise Busy("the heavy lane stayed full; retry shortly, or ask for a shorter list") from None
        finally:
            self.waiting -= 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: fn(*args))
        finally:
            self._slots.release()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
