"""The job queue: requests are served one at a time, in the order they arrived.

One worker thread owns the model; HTTP threads only submit jobs and read their state. A job
goes ``queued -> running -> done | failed``, or ``cancelled`` (a queued job is dropped; a
running one stops at its next sampler step). While it runs, ``step``/``total`` follow the
sampler's progress. Jobs are numbered as they are submitted (``number``) and as they start
(``started_order``), so a client can check that nothing was reordered or lost.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mka_core.errors import InputError, MkaError
from mka_core.serve.folders import new_id

STATES = ("queued", "running", "done", "failed", "cancelled")


class QueueFull(InputError):
    """Too many jobs are waiting (answered with HTTP 503)."""


class JobCancelled(Exception):
    """Raised from the progress callback to stop a job that was cancelled while running."""


@dataclass
class Job:
    id: str
    number: int
    payload: Any
    summary: dict[str, Any]
    status: str = "queued"
    phase: str = "waiting"
    step: int = 0
    total: int = 0
    error: str | None = None
    result: Any = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    started_order: int | None = None
    cancel_requested: bool = False

    @property
    def finished_state(self) -> bool:
        return self.status in ("done", "failed", "cancelled")


Runner = Callable[[Job, Callable[[int, int], None]], Any]


class JobQueue:
    """FIFO of jobs with one worker thread calling ``runner(job, progress)``."""

    def __init__(self, runner: Runner, *, max_waiting: int = 32, history: int = 200,
                 forget: Callable[[Job], None] | None = None) -> None:
        self._runner = runner
        self._max_waiting = max_waiting
        self._history = history
        self._forget = forget
        self._jobs: dict[str, Job] = {}
        self._waiting: collections.deque[Job] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._submitted = 0
        self._started = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="mka-serve-worker", daemon=True)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker (a second call does nothing)."""
        with self._lock:
            if self._thread.ident is None:
                self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel what waits, ask the running job to stop, and wait for the worker."""
        with self._lock:
            self._stopping = True
            for job in self._waiting:
                self._finish(job, "cancelled", error="The server is shutting down.")
            self._waiting.clear()
            for job in self._jobs.values():
                if job.status == "running":
                    job.cancel_requested = True
            self._wake.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- clients ------------------------------------------------------------------------------------
    def submit(self, payload: Any, summary: dict[str, Any]) -> Job:
        with self._lock:
            if self._stopping:
                raise QueueFull("The server is shutting down; no new jobs are accepted.")
            if len(self._waiting) >= self._max_waiting:
                raise QueueFull(f"{len(self._waiting)} jobs are already waiting (the limit); try again when some finish.")
            self._submitted += 1
            job = Job(id=new_id(), number=self._submitted, payload=payload, summary=summary)
            self._jobs[job.id] = job
            self._waiting.append(job)
            self._wake.notify_all()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        """All jobs still remembered, oldest first."""
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.number)

    def position(self, job: Job) -> int:
        """How many jobs run before this one (0 when it is next or running)."""
        with self._lock:
            if job.status != "queued":
                return 0
            ahead = sum(1 for j in self._waiting if j.number < job.number)
            running = any(j.status == "running" for j in self._jobs.values())
            return ahead + int(running)

    def cancel(self, job: Job) -> None:
        with self._lock:
            if job.status == "queued":
                self._waiting.remove(job)
                self._finish(job, "cancelled", error="Cancelled before it started.")
            elif job.status == "running":
                job.cancel_requested = True

    def snapshot(self, job: Job) -> dict[str, Any]:
        """A consistent copy of the fields clients see."""
        with self._lock:
            return {"id": job.id, "number": job.number, "status": job.status, "phase": job.phase, "step": job.step,
                    "total": job.total, "error": job.error, "created": job.created, "started": job.started,
                    "finished": job.finished, "started_order": job.started_order, "summary": job.summary}

    # -- the worker -----------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._stopping:
                    self._wake.wait()
                if self._stopping and not self._waiting:
                    return
                job = self._waiting.popleft()
                self._started += 1
                job.status, job.phase, job.started, job.started_order = "running", "preparing", time.time(), self._started
            self._run(job)

    def _run(self, job: Job) -> None:
        def progress(step: int, total: int) -> None:
            if job.cancel_requested:
                raise JobCancelled
            with self._lock:
                # After the last step the VAE decoder, the vocoder and the file writing still run.
                job.phase = "sampling" if step < total else "finishing"
                job.step, job.total = int(step), int(total)

        try:
            result = self._runner(job, progress)
        except JobCancelled:
            with self._lock:
                self._finish(job, "cancelled", error="Cancelled while running.")
        except MkaError as exc:
            with self._lock:
                self._finish(job, "failed", error=str(exc))
        except Exception as exc:  # a bug: keep the server alive, say so, log the traceback
            traceback.print_exc(file=sys.stderr)
            with self._lock:
                self._finish(job, "failed", error=f"Internal error ({exc.__class__.__name__}: {exc}); this is a bug in "
                                                  "mka or a plugin, see the server's log.")
        else:
            with self._lock:
                job.result = result
                self._finish(job, "done")
        self._trim()

    def _finish(self, job: Job, status: str, error: str | None = None) -> None:
        job.status, job.error, job.finished = status, error, time.time()
        job.phase = status

    def _trim(self) -> None:
        """Forget the oldest finished jobs beyond the history length."""
        with self._lock:
            finished = [j for j in sorted(self._jobs.values(), key=lambda j: j.number) if j.finished_state]
            dropped = finished[: max(0, len(finished) - self._history)]
            for job in dropped:
                del self._jobs[job.id]
        for job in dropped:
            if self._forget is not None:
                self._forget(job)
