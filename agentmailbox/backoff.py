"""Exponential backoff: when to try again something that keeps failing.

One schedule for every loop that retries: ``mailbox watch --exec`` pausing a message
whose command failed (or the claims while file descriptors run out), and the
supervisor retrying deferred mail. The n-th failure in a row of one key waits
``first * 2 ** (n - 1)`` seconds, at most ``longest`` and at least ``shortest``::

    retries = Backoff(0.5, 30.0)
    retries.failed("msg-1")     # 0.5 s; then 1 s, 2 s, 4 s ... 30 s
    retries.ready("msg-1")      # False until those seconds have passed
    retries.forget("msg-1")     # it worked: the next failure starts again at 0.5 s

Keys are anything hashable (a message id, a file name). ``Backoff(math.inf, math.inf)``
never lets a key that failed be tried again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable

__all__ = ["Backoff"]


class Backoff:
    """Per key: how many failures in a row, and when the next try is due.

    Args:
        first: The pause after the first failure, in seconds.
        longest: The pause never grows past this.
        shortest: Nor falls below this (a zero ``first`` would otherwise spin).
        clock: Monotonic seconds (tests pass a fake one).
    """

    def __init__(self, first: float, longest: float, *, shortest: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.first = first
        self.longest = longest
        self.shortest = shortest
        self._clock = clock
        self._keys: dict[Hashable, tuple[int, float]] = {}  # key -> (failures, due at)

    def pause(self, failures: int) -> float:
        """The pause after the ``failures``-th failure in a row (1 for the first)."""
        doublings = min(failures - 1, 64)  # 2.0 ** 1024 overflows; 2 ** 64 s is forever
        return max(self.shortest, min(self.longest, self.first * 2.0 ** doublings))

    def failed(self, key: Hashable) -> float:
        """Count one more failure of ``key``; returns the pause before its next try."""
        failures = self._keys.get(key, (0, 0.0))[0] + 1
        pause = self.pause(failures)
        self._keys[key] = (failures, self._clock() + pause)
        return pause

    def forget(self, key: Hashable) -> None:
        """``key`` succeeded, or is gone: its next failure is a first one again."""
        self._keys.pop(key, None)

    def keep_only(self, keys: Iterable[Hashable]) -> None:
        """Forget every key not in ``keys``."""
        present = set(keys)
        self._keys = {k: v for k, v in self._keys.items() if k in present}

    def waiting(self, key: Hashable) -> bool:
        """Whether ``key`` has failed and not been forgotten since."""
        return key in self._keys

    def ready(self, key: Hashable) -> bool:
        """Whether ``key`` may be tried now (it never failed, or its pause is over)."""
        entry = self._keys.get(key)
        return entry is None or self._clock() >= entry[1]

    def next_at(self) -> float | None:
        """The clock time of the soonest due try (None: nothing is waiting)."""
        due = [at for _, at in self._keys.values() if at != float("inf")]
        return min(due) if due else None

    def next_in(self) -> float | None:
        """Seconds until the soonest due try, never negative (None: nothing is waiting)."""
        at = self.next_at()
        return None if at is None else max(at - self._clock(), 0.0)
