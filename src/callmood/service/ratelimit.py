"""Failed-login throttling: after N wrong tokens within a window, a client gets 429.

The counts live in this process's memory: a server with several worker processes
(or several servers behind one proxy) counts per process, so an attacker gets up to
N tries per process and window; such deployments need a shared store (e.g. Redis)
or throttling at the proxy. Clients are told apart by IP address: behind a reverse
proxy, uvicorn takes it from `X-Forwarded-For` when the proxy is on loopback.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

# Distinct clients remembered at most; the oldest are forgotten first, so that a flood
# of addresses cannot grow the table without bound.
MAX_TRACKED_CLIENTS = 10_000


class LoginRateLimiter:
    """Counts failed logins per client key in a sliding window.

    Thread-safe: the login routes run on FastAPI's thread pool.
    """

    def __init__(
        self,
        max_failures: int,
        window_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window_seconds:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures

    def retry_after(self, key: str) -> int | None:
        """Seconds until `key` may try again (rounded up), or None if it may try now."""
        with self._lock:
            now = self._clock()
            failures = self._recent(key, now)
            if failures is None or len(failures) < self.max_failures:
                return None
            # Blocked until enough of the counted failures have left the window.
            unblocks_at = failures[-self.max_failures] + self.window_seconds
            return max(1, math.ceil(unblocks_at - now))

    def record_failure(self, key: str) -> None:
        """Count one failed login of `key`."""
        with self._lock:
            now = self._clock()
            failures = self._recent(key, now)
            if failures is None:
                if len(self._failures) >= MAX_TRACKED_CLIENTS:
                    self._failures.pop(next(iter(self._failures)))
                failures = self._failures[key] = deque(maxlen=self.max_failures)
            failures.append(now)

    def reset(self, key: str) -> None:
        """Forget `key`'s failures (after a successful login)."""
        with self._lock:
            self._failures.pop(key, None)
