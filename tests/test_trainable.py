"""``search.trainable.reports_taken``: a trial function returns only once Tune's side holds no Train report, with
stand-ins for the session's two one-slot queues (the end-to-end searches in ``test_run.py`` run the real ones)."""

from __future__ import annotations

import queue
import threading
import time
from types import SimpleNamespace

from search.trainable import reports_taken


class RayQueueLike:
    """The ``empty()`` of ``ray.util.queue.Queue``, over a local queue."""

    def __init__(self) -> None:
        self.items: queue.Queue = queue.Queue(1)

    def empty(self) -> bool:
        return self.items.empty()


def session(inter_items: int = 0, result_items: int = 0) -> SimpleNamespace:
    inter, results = RayQueueLike(), queue.Queue(1)
    for _ in range(inter_items):
        inter.items.put("train report")
    for _ in range(result_items):
        results.put("result")
    return SimpleNamespace(_inter_actor_queue=inter, result_queue=results)


def test_returns_once_both_queues_stay_empty_for_the_settle_time():
    start = time.monotonic()
    reports_taken(session(), poll_s=0.005, settle_s=0.05)
    assert 0.05 <= time.monotonic() - start < 1.0


def test_waits_while_a_train_report_is_still_in_the_queue_between_actors():
    waiting = session(inter_items=1)
    done = threading.Event()

    def trial_function_end() -> None:
        reports_taken(waiting, poll_s=0.005, settle_s=0.05)
        done.set()

    thread = threading.Thread(target=trial_function_end)
    thread.start()
    assert not done.wait(0.3)  # Tune has not asked for the report yet
    waiting._inter_actor_queue.items.get()  # the actor's main thread takes it, reports it, hands it to Tune
    thread.join(timeout=2)
    assert done.is_set()


def test_waits_while_a_result_waits_for_tune():
    waiting = session(result_items=1)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (reports_taken(waiting, poll_s=0.005, settle_s=0.05), done.set()))
    thread.start()
    assert not done.wait(0.3)
    waiting.result_queue.get()
    thread.join(timeout=2)
    assert done.is_set()


def test_a_session_without_those_queues_waits_for_nothing():
    start = time.monotonic()
    reports_taken(SimpleNamespace(result_queue=queue.Queue(1)), settle_s=10)
    assert time.monotonic() - start < 1.0
