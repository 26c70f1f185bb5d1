"""Train's reports to Tune, relayed by the trial function's own thread.

Ray 2.60's ``TuneReportCallback`` hands each Train report to the trial actor through a one-slot queue that the
actor's main thread empties only when Tune asks the trial for its next result.  When the trial function returns,
Tune's wrapper puts a last "duplicate" result into the actor's one-slot result queue; a Train report still waiting
at that moment is taken later by the main thread, which then blocks for ever putting it behind the duplicate.  The
trial never ends and the search hangs; slow driver callbacks (the W&B and MLflow loggers) made that likely.

Here the trial function itself reports each Train result with ``tune.report``, the path every function trainable
uses, while ``fit()`` runs beside it; it returns only after the last report has been taken, so Tune's duplicate
comes after every real result by construction, with no timing to get right.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

from ray.train.v2.api.callback import UserCallback
from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY  # the metric naming a report's checkpoint, as Ray's
from ray.util.queue import Empty, Queue

#: How long the relay waits for a report before looking again whether ``fit()`` has returned.
POLL_S = 0.2


class ReportRelay(UserCallback):
    """A Train callback (it runs in Train's controller) that queues each report, unbounded, for the trial
    function to pass on (``relay_fit``).  Build it inside the trial function: its queue is an actor owned by the
    trial, and dies with it."""

    def __init__(self) -> None:
        self.queue = Queue(actor_options={"num_cpus": 0})

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        result = dict(metrics[0])  # one worker per trial
        if checkpoint is not None:
            result[CHECKPOINT_PATH_KEY] = checkpoint.path
        self.queue.put(result)


def relay_fit(
    fit: Callable[[], Any], relay: ReportRelay, report: Callable[[dict[str, Any]], None], poll_s: float = POLL_S
) -> Any:
    """Run ``fit`` in a thread and ``report`` each result ``relay`` receives, in order, from this thread; return
    ``fit``'s value once it has returned and every result it produced has been reported, or raise its error."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = fit()
        except BaseException as exc:  # re-raised in the trial's thread, where Tune sees it
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="nlrd-train-fit", daemon=True)
    thread.start()
    while thread.is_alive():
        with contextlib.suppress(Empty):
            report(relay.queue.get(timeout=poll_s))
    while not relay.queue.empty():  # reports that arrived while the last look waited
        report(relay.queue.get_nowait())
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")
