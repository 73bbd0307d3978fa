"""The failed-login counter behind the 429s of /login and /api/auth/login (a fake clock)."""

from __future__ import annotations

from callmood.service import ratelimit
from callmood.service.ratelimit import LoginRateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_blocks_after_the_limit_until_the_window_has_passed():
    clock = FakeClock()
    limiter = LoginRateLimiter(3, 60, clock=clock)
    for _ in range(3):
        assert limiter.retry_after("10.0.0.1") is None
        limiter.record_failure("10.0.0.1")
        clock.now += 10
    # Failures at 1000, 1010, 1020; now 1030: free again when the first leaves the window.
    assert limiter.retry_after("10.0.0.1") == 30
    clock.now += 29.5
    assert limiter.retry_after("10.0.0.1") == 1
    clock.now += 0.5
    assert limiter.retry_after("10.0.0.1") is None
    limiter.record_failure("10.0.0.1")  # 1060: three within the window again
    assert limiter.retry_after("10.0.0.1") == 10


def test_clients_are_counted_apart_and_a_success_resets():
    limiter = LoginRateLimiter(2, 300, clock=FakeClock())
    for _ in range(2):
        limiter.record_failure("attacker")
    assert limiter.retry_after("attacker") is not None
    assert limiter.retry_after("colleague") is None
    limiter.reset("attacker")
    assert limiter.retry_after("attacker") is None


def test_the_table_of_clients_stays_bounded(monkeypatch):
    monkeypatch.setattr(ratelimit, "MAX_TRACKED_CLIENTS", 3)
    limiter = LoginRateLimiter(1, 300, clock=FakeClock())
    for client in ("a", "b", "c", "d"):
        limiter.record_failure(client)
    assert limiter.retry_after("a") is None  # the oldest was forgotten
    assert all(limiter.retry_after(client) for client in ("b", "c", "d"))
