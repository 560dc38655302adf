"""The job queue on its own: one worker, FIFO, progress, cancellation, limits, failures."""

from __future__ import annotations

import threading
import time

import pytest

from mka_core.errors import InputError
from mka_core.serve.jobs import JobQueue, QueueFull


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.005)


class Gate:
    """A runner that reports step 1 of 3, then waits until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.ran: list[str] = []
        self.active = 0
        self.most_active = 0

    def __call__(self, job, progress):
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            progress(1, 3)
            self.release.wait(10)
            progress(3, 3)
            self.ran.append(job.payload)
            return f"result of {job.payload}"
        finally:
            self.active -= 1


@pytest.fixture
def gate():
    return Gate()


@pytest.fixture
def queue(gate):
    q = JobQueue(gate, max_waiting=3, history=50)
    q.start()
    yield q
    gate.release.set()
    q.stop()


def test_progress_is_visible_while_a_job_runs_and_jobs_run_one_at_a_time_in_order(queue, gate):
    jobs = [queue.submit(f"job{i}", {}) for i in range(3)]
    wait_until(lambda: queue.snapshot(jobs[0])["step"] == 1)
    first = queue.snapshot(jobs[0])
    assert (first["status"], first["phase"], first["step"], first["total"]) == ("running", "sampling", 1, 3)
    assert [queue.snapshot(j)["status"] for j in jobs[1:]] == ["queued", "queued"]
    assert [queue.position(j) for j in jobs] == [0, 1, 2]
    gate.release.set()
    wait_until(lambda: all(j.finished_state for j in jobs))
    assert gate.ran == ["job0", "job1", "job2"] and gate.most_active == 1
    assert [j.started_order for j in jobs] == [1, 2, 3]
    assert [j.result for j in jobs] == ["result of job0", "result of job1", "result of job2"]


def test_a_full_queue_refuses_with_a_clear_error(queue, gate):
    running = queue.submit("running", {})
    wait_until(lambda: running.status == "running")
    for i in range(3):
        queue.submit(f"waiting{i}", {})
    with pytest.raises(QueueFull, match="3 jobs are already waiting"):
        queue.submit("one too many", {})


def test_cancel_drops_a_queued_job_and_stops_a_running_one(queue, gate):
    running = queue.submit("running", {})
    waiting = queue.submit("waiting", {})
    wait_until(lambda: running.step == 1)
    queue.cancel(waiting)
    assert waiting.status == "cancelled"
    queue.cancel(running)
    gate.release.set()  # the runner reports its next step, which raises JobCancelled
    wait_until(lambda: running.finished_state)
    assert running.status == "cancelled" and running.result is None and gate.ran == []


def test_a_failing_job_reports_its_sentence_and_the_worker_goes_on():
    def runner(job, progress):
        if job.payload == "bad":
            raise InputError("The prompt is bad.")
        if job.payload == "bug":
            raise ZeroDivisionError("oops")
        return "fine"

    q = JobQueue(runner)
    q.start()
    try:
        bad, bug, good = (q.submit(p, {}) for p in ("bad", "bug", "good"))
        wait_until(lambda: good.finished_state)
        assert (bad.status, bad.error) == ("failed", "The prompt is bad.")
        assert bug.status == "failed" and "Internal error (ZeroDivisionError" in bug.error
        assert (good.status, good.result) == ("done", "fine")
    finally:
        q.stop()


def test_old_finished_jobs_are_forgotten_beyond_the_history_length():
    forgotten = []
    q = JobQueue(lambda job, progress: None, history=2, forget=forgotten.append)
    q.start()
    try:
        jobs = [q.submit(i, {}) for i in range(4)]
        wait_until(lambda: all(j.finished_state for j in jobs) and len(forgotten) == 2)
        assert [j.payload for j in forgotten] == [0, 1]
        assert [j.payload for j in q.jobs()] == [2, 3] and q.get(jobs[0].id) is None
    finally:
        q.stop()


def test_stopping_cancels_what_waits_and_refuses_new_jobs(gate):
    q = JobQueue(gate)
    q.start()
    running = q.submit("running", {})
    waiting = q.submit("waiting", {})
    wait_until(lambda: running.step == 1)
    gate.release.set()
    q.stop()
    assert waiting.status == "cancelled"
    with pytest.raises(QueueFull, match="shutting down"):
        q.submit("late", {})
