"""Token buckets: requests per key, and failed authentications per client address.

A bucket holds up to ``burst`` tokens and refills at ``per_minute / 60`` tokens a second; a
request takes one, and an empty bucket answers with the seconds until the next token (the
``Retry-After`` of a 429). Buckets live in memory, one per name, and the least recently used are
dropped past ``max_buckets`` so a flood of made-up addresses or names cannot grow memory without
bound (a dropped bucket comes back full, which only ever favours a client that went quiet).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable


class RateLimiter:
    """One token bucket per name.

    Args:
        per_minute: refill rate; 0 turns the limiter off.
        burst: bucket size (requests allowed at once after a quiet spell).
        max_buckets: names remembered at most.
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(self, per_minute: float, burst: int, *, max_buckets: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        self.rate = per_minute / 60.0
        self.burst = max(1, int(burst))
        self.max_buckets = max_buckets
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # name -> (tokens, at)
        self._lock = threading.Lock()

    def _level(self, name: str, now: float) -> float:
        tokens, at = self._buckets.get(name, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) * self.rate)

    def _wait(self, tokens: float) -> int:
        """Whole seconds until one token is back (at least 1)."""
        return max(1, math.ceil((1.0 - tokens) / self.rate)) if self.rate > 0 else 1

    def take(self, name: str) -> int:
        """Take one token. Returns 0 when allowed, else the seconds to wait (nothing is taken)."""
        if self.rate <= 0:
            return 0
        with self._lock:
            now = self.clock()
            tokens = self._level(name, now)
            if tokens < 1.0:
                return self._wait(tokens)
            self._store(name, tokens - 1.0, now)
            return 0

    def blocked(self, name: str) -> int:
        """Seconds until ``name`` may try again, without taking a token (0 = not blocked)."""
        if self.rate <= 0:
            return 0
        with self._lock:
            tokens = self._level(name, self.clock())
            return 0 if tokens >= 1.0 else self._wait(tokens)

    def _store(self, name: str, tokens: float, now: float) -> None:
        self._buckets[name] = (tokens, now)
        self._buckets.move_to_end(name)
        while len(self._buckets) > self.max_buckets:
            self._buckets.popitem(last=False)
