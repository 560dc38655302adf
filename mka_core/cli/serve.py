"""`mka serve`: a local web app and JSON API over one model kept in memory (docs/serve.md)."""

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
    from mka_core.model_lookup import resolve_model
    from mka_core.pipeline import Pipeline
    from mka_core.serve.api import Api
    from mka_core.serve.folders import AppFolders
    from mka_core.serve.limits import Limits
    from mka_core.serve.runtime import ModelRuntime
    from mka_core.serve.security import AccessPolicy, is_loopback
    from mka_core.serve.server import ServeHTTPServer

    if not 0 <= args.port <= 65535:
        raise InputError(f"--port must be between 0 and 65535, got {args.port}.")
    if args.max_upload_mb is not None and not args.max_upload_mb > 0:
        raise InputError(f"--max-upload-mb must be positive, got {args.max_upload_mb:g}.")
    if args.queue is not None and args.queue < 1:
        raise InputError(f"--queue must be at least 1, got {args.queue}.")
    limits = Limits().with_upload_megabytes(args.max_upload_mb)
    if args.queue is not None:
        limits = Limits(**{**limits.__dict__, "queue_length": args.queue})
    policy = AccessPolicy.for_binding(args.host, args.token)

    model_dir = resolve_model(args.model)
    pipe = Pipeline.from_pretrained(model_dir, device=args.device, dtype=args.dtype)
    folders = AppFolders(args.workdir)
    api = Api(ModelRuntime(pipe, model_dir, limits), folders, limits)
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
        print(f"mka serve: model {model_dir} on {pipe.device}", flush=True)
        print(f"mka serve: files in {folders.root}{' (removed at exit)' if folders.temporary else ''}", flush=True)
        if not is_loopback(args.host):
            print("mka serve: listening beyond this machine; share the address (it holds the access token) only "
                  "with people you trust.", flush=True)
        print(f"mka serve: open {url}", flush=True)
        server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        print("mka serve: stopping.", file=sys.stderr, flush=True)
    finally:
        server.server_close()
        api.queue.stop()
        folders.cleanup()
    return 0


COMMANDS = [Command("serve", "Start a local web app and JSON API for generating audio with one model.", add_arguments, run)]
