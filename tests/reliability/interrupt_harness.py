"""Real `mka` CLI runs in processes of their own that a test can stop at a chosen point.

Importing torch, transformers and mka costs a few seconds of CPU per process, which made one
fresh interpreter per run slow (and, on a loaded machine, slow enough to hang the suite). So a
*launcher* (``python -m tests.reliability.interrupt_harness``) imports them once, without
running any tensor operation, and forks one child per run. Each child is an ordinary process
with its own pid that runs the real ``mka_core.cli.main.main(argv)``: signals sent to it take
the same path as a Ctrl-C in a terminal or a ``kill`` from a supervisor.

Protocol: JSON lines. The test writes requests to the launcher's stdin::

    {"run": 1, "argv": [...], "stdout": PATH, "stderr": PATH,
     "pause_at": "module:qualname" | null, "call": 1, "tiny_conversion": false}

and reads events from its stdout: ``{"ready": true}`` once the imports are done,
``{"run": 1, "pid": N}`` when the child is forked, ``{"run": 1, "paused": true}`` when the
child is inside the chosen function, ``{"run": 1, "exit": CODE}`` when it ended (a negative
code: killed by that signal). ``{"kill": 1}`` SIGKILLs a child that has not been reaped yet.

A paused child waits for SIGUSR1 (the test releases it) or a signal that stops it; after
``PAUSE_SECONDS`` without either it gives up and exits 3, so nothing lingers. When the
launcher's stdin closes (the test ended, or was killed), it SIGKILLs every child left and exits.

``tiny_conversion`` makes ``mka convert maa-b`` convert a tiny random pipeline instead of a
released checkpoint, so the writing phase of a conversion can be interrupted without building
gigabytes of reference weights.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import select
import signal
import sys
import traceback

PAUSE_SECONDS = 180.0
#: Imported once in the launcher so each forked run starts warm.
WARM_MODULES = ("torch", "numpy", "soundfile", "transformers", "rich.console", "rich.progress",
                "mka_core.cli.main", "mka_core.cli.generate", "mka_core.cli.convert", "mka_core.pipeline",
                "mka_core.generate", "mka_core.outputs.writer", "mka_core.presets", "mka_plugins.conditioners.bert")
#: transformers imports its models on first attribute access: touch what the tiny bert models use.
WARM_ATTRIBUTES = ("AutoTokenizer", "BertTokenizer", "BertTokenizerFast", "BertConfig", "BertModel")


def _emit(fd: int, **event) -> None:
    # One os.write of a short line: atomic on a pipe, so the launcher and its children never
    # interleave their events, and no Python-level lock is involved across fork.
    os.write(fd, (json.dumps(event) + "\n").encode())


# -- inside a child ---------------------------------------------------------------------------


def _install_pause(target: str, call_number: int, events: int, run: int) -> None:
    module_name, _, qualname = target.partition(":")
    owner = importlib.import_module(module_name)
    *path, name = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    calls = 0

    @functools.wraps(original)
    def paused(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == call_number:
            _emit(events, run=run, paused=True)
            # Blocks without spinning. SIGINT/SIGTERM run their Python handlers here
            # (KeyboardInterrupt), exactly as they would inside the real function.
            if signal.sigtimedwait([signal.SIGUSR1], PAUSE_SECONDS) is None:
                os.write(2, b"interrupt_harness: never released or stopped; giving up\n")
                os._exit(3)
        return original(*args, **kwargs)

    setattr(owner, name, paused)


def _install_tiny_conversion() -> None:
    import mka_core.convert.maa_b as maa_b
    from mka_core.convert.common import Conversion

    def tiny_conversion(ckpt, kind, *, staging, **_options):
        from mka_core.presets import build_pipeline

        pipe = build_pipeline("tiny", cond="bert", seed=0, device="cpu")
        return Conversion(pipeline=pipe, ledgers=[], filled={}, info={"family": f"test:{kind}", "checkpoint": str(ckpt)})

    maa_b.convert_maa_b = tiny_conversion


def _child(request: dict, events: int) -> None:
    """Runs in the forked child; never returns."""
    code = 1
    try:
        # Signal state of a process started from a terminal, whatever the launcher had: a test
        # runner started in the background inherits SIGINT ignored, and then Ctrl-C would do nothing.
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})  # taken by sigtimedwait only
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, name in ((1, "stdout"), (2, "stderr")):
            target = os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        if request.get("tiny_conversion"):
            _install_tiny_conversion()
        if request.get("pause_at"):
            _install_pause(request["pause_at"], int(request.get("call", 1)), events, request["run"])
        from mka_core.cli.main import main

        try:
            code = main(request["argv"])
        except SystemExit as exc:  # argparse usage errors
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except BaseException:  # a failure of the harness itself: show it to the test
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


# -- the launcher -----------------------------------------------------------------------------


def _exit_code(status: int) -> int:
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def serve() -> None:
    # A Ctrl-C in the test's terminal is the test runner's to handle; the launcher ends when its
    # stdin closes (the runner's teardown, or the runner's death), taking its children with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    events = os.dup(1)
    for name in WARM_MODULES:
        importlib.import_module(name)
    transformers = sys.modules["transformers"]
    for name in WARM_ATTRIBUTES:
        getattr(transformers, name)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a Python handler, so SIGCHLD writes to the wakeup fd
    live: dict[int, int] = {}  # pid -> run
    buffer = b""
    _emit(events, ready=True)
    closing = False
    while not closing or live:
        if closing:
            for pid in live:
                os.kill(pid, signal.SIGKILL)
        ready, _, _ = select.select([wake_read] + ([] if closing else [0]), [], [], 5.0)
        if wake_read in ready:
            os.read(wake_read, 512)
        while live:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            run = live.pop(pid, None)
            if run is not None:
                _emit(events, run=run, exit=_exit_code(status))
        if 0 not in ready:
            continue
        chunk = os.read(0, 65536)
        if not chunk:
            closing = True
            continue
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            request = json.loads(line)
            if "kill" in request:
                for pid, run in live.items():
                    if run == request["kill"]:
                        os.kill(pid, signal.SIGKILL)
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                os.close(wake_read)
                os.close(wake_write)
                _child(request, events)
            live[pid] = request["run"]
            _emit(events, run=request["run"], pid=pid)


if __name__ == "__main__":
    serve()
