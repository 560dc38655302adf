"""Run the real `mka` CLI in a child process that can be caught at a chosen point.

Used as ``python -m tests.reliability.interrupt_harness ARGS...`` by the interruption and
concurrency tests. Nothing about the command changes except that, when asked through the
environment, one function pauses before it runs:

* ``RELIABILITY_PAUSE_AT=module:qualname`` - the function to pause in (e.g.
  ``mka_core.pipeline:Pipeline.sample``); its ``RELIABILITY_PAUSE_CALL``-th call (default 1)
  prints ``PAUSED`` on stdout and waits;
* ``RELIABILITY_GO_FILE=path`` - the pause ends once this file exists (without it, the pause
  lasts until the test sends its signal);
* ``RELIABILITY_TINY_CONVERSION=1`` - ``mka convert maa-b`` converts a tiny random pipeline
  instead of reading a released checkpoint, so the writing phase of a conversion can be
  interrupted without building gigabytes of reference weights.

The parent sends SIGINT or SIGTERM once it reads ``PAUSED``: the signal lands while the
command is really inside that function (sampling, writing a file, saving a model).
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import time

PAUSE_SECONDS = 300


def _install_pause(target: str, call_number: int, go_file: str | None) -> None:
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
            print("PAUSED", flush=True)
            deadline = time.monotonic() + PAUSE_SECONDS
            while time.monotonic() < deadline and not (go_file and os.path.exists(go_file)):
                time.sleep(0.02)
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


def main() -> int:
    if os.environ.get("RELIABILITY_TINY_CONVERSION") == "1":
        _install_tiny_conversion()
    target = os.environ.get("RELIABILITY_PAUSE_AT")
    if target:
        _install_pause(target, int(os.environ.get("RELIABILITY_PAUSE_CALL", "1")), os.environ.get("RELIABILITY_GO_FILE"))
    from mka_core.cli.main import main as mka_main

    return mka_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
