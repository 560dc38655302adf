"""`mka serve`: a local web app and JSON API over one model kept in memory (docs/serve.md).

Runs on Starlette and uvicorn, from the ``serve`` extra (``pip install "mka[serve]"``).
"""

from __future__ import annotations

import argparse
import sys

from mka_core.cli.command import Command
from mka_core.errors import InputError

DEFAULT_PORT = 7410


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", "-m", default=None,
                        help="a model folder, or a model name in $MKA_HOME/models (default: the embedded default model)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1, this machine only; any other address "
                             "requires an access token)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--token", default=None,
                        help="access token clients must present (default: none on 127.0.0.1, a random one printed "
                             "at start-up on any other address)")
    parser.add_argument("--workdir", default=None,
                        help="folder for uploads and results, kept afterwards (default: a temporary folder removed "
                             "when the server stops)")
    parser.add_argument("--max-upload-mb", type=float, default=None,
                        help="largest upload in MB for every kind (default: audio 50, image 20, video 200)")
    parser.add_argument("--queue", type=int, default=None, help="jobs allowed to wait at once (default 32)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    parser.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16 (default float32)")
    parser.add_argument("--log-requests", action="store_true", help="print one line per HTTP request on stderr")


def run(args: argparse.Namespace) -> int:
    from mka_core.serve.factory import ServeSettings, assemble, require_serve_extra
    from mka_core.serve.security import is_loopback

    require_serve_extra()  # before loading a model: the one sentence a missing Starlette/uvicorn deserves
    from mka_core.serve.server import ServeHTTPServer

    settings = ServeSettings(model=args.model, host=args.host, port=args.port, token=args.token, workdir=args.workdir,
                             max_upload_mb=args.max_upload_mb, queue=args.queue, device=args.device, dtype=args.dtype,
                             log_requests=args.log_requests)
    settings.limits()  # bad flags are refused before the model loads
    built = assemble(settings)
    api, policy, folders = built.api, built.policy, built.folders
    try:
        server = ServeHTTPServer((args.host, args.port), api, policy, log=args.log_requests)
    except OSError as exc:
        folders.cleanup()
        raise InputError(f"Cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); "
                         "choose another --port or --host.") from exc
    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown_host}:{server.port}/"
    if policy.token:
        url += f"?token={policy.token}"
    # Everything from here on is inside the try: a Ctrl-C or SIGTERM that arrives right after the
    # address is printed (a supervisor stopping the server as soon as it is up) is a clean stop.
    try:
        api.queue.start()
        print(f"mka serve: model {built.model_dir} on {built.device}", flush=True)
        print(f"mka serve: files in {folders.root}{' (removed at exit)' if folders.temporary else ''}", flush=True)
        if not is_loopback(args.host):
            print("mka serve: listening beyond this machine; share the address (it holds the access token) only "
                  "with people you trust.", flush=True)
        print(f"mka serve: open {url}", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        print("mka serve: stopping.", file=sys.stderr, flush=True)
    finally:
        server.server_close()
        api.queue.stop()
        folders.cleanup()
    return 0


COMMANDS = [Command("serve", "Start a local web app and JSON API for generating audio with one model.", add_arguments, run)]
