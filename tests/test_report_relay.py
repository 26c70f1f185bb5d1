"""``search.report_relay``: the trial function passes on every Train report, in order, before it returns, even the
last ones arriving as ``fit()`` ends while Tune is slow to take them, and raises what ``fit()`` raised."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from search.report_relay import CHECKPOINT_PATH_KEY, ReportRelay, relay_fit


def _training(relay: ReportRelay, count: int, pause_s: float = 0.0):
    """A stand-in for a Train trainer's ``fit``: Train's controller calls the callback once per report."""

    def fit() -> str:
        for step in range(1, count + 1):
            time.sleep(pause_s)
            relay.after_report(None, [{"step": step}], SimpleNamespace(path=f"/ckpt/{step}") if step % 2 else None)
        return "fitted"

    return fit


def test_every_report_reaches_tune_in_order_before_the_trial_returns(ray_cluster):
    relay = ReportRelay()
    taken: list[dict] = []

    def slow_tune(result: dict) -> None:  # a driver with slow callbacks (the loggers) takes results late
        time.sleep(0.05)
        taken.append(result)

    assert relay_fit(_training(relay, 6), relay, slow_tune, poll_s=0.01) == "fitted"
    assert [r["step"] for r in taken] == [1, 2, 3, 4, 5, 6]
    assert taken[0][CHECKPOINT_PATH_KEY] == "/ckpt/1" and CHECKPOINT_PATH_KEY not in taken[1]
    assert relay.queue.empty()


def test_reports_spread_over_the_run_are_passed_on_as_they_come(ray_cluster):
    relay = ReportRelay()
    seen_at: list[float] = []
    start = time.monotonic()
    relay_fit(_training(relay, 3, pause_s=0.3), relay, lambda r: seen_at.append(time.monotonic() - start))
    assert len(seen_at) == 3
    assert seen_at[0] < 0.9  # the first one while fit() still runs, not all at its end


def test_fits_error_is_raised_in_the_trial_after_its_reports(ray_cluster):
    relay = ReportRelay()
    taken: list[dict] = []

    def failing() -> None:
        relay.after_report(None, [{"step": 1}], None)
        raise RuntimeError("training failed")

    with pytest.raises(RuntimeError, match="training failed"):
        relay_fit(failing, relay, taken.append, poll_s=0.01)
    assert [r["step"] for r in taken] == [1]
