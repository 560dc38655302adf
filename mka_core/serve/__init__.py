"""`mka serve`: a local web app and JSON API over one model kept in memory.

It runs on a standard ASGI stack - Starlette, served by uvicorn - from the ``serve`` extra
(``pip install "mka[serve]"``). Layout (one idea per module):

* :mod:`.limits` - the safe defaults (upload sizes, queue length, request bounds);
* :mod:`.folders` - the app's own folders and the random ids that name everything in them;
* :mod:`.security` - the access rules: token, Host and Origin;
* :mod:`.middleware` - those rules and the security headers applied to every request (ASGI);
* :mod:`.uploads` - storing, sniffing and validating uploaded images, videos and audio;
* :mod:`.upload_body` - reading an upload's bytes off a request, bounded before it is read;
* :mod:`.mask_boxes` - the boxes drawn on a spectrogram as an inpainting mask;
* :mod:`.requests` - the JSON body of a generation request;
* :mod:`.runtime` - the model in memory: describing it, analysing audio, running a job;
* :mod:`.jobs` - the queue and its single worker thread;
* :mod:`.api` - what the API does, apart from HTTP;
* :mod:`.app` - the Starlette application: routes, HTTP errors, file answers;
* :mod:`.server` - uvicorn on a socket bound beforehand (what ``mka serve`` runs);
* :mod:`.factory` - settings, and ``create_app()`` for running under another ASGI server.

``mka_core.serve:create_app`` is :func:`mka_core.serve.factory.create_app` (imported on first
use, so this package imports without the extra). See ``docs/serve.md``.
"""


def __getattr__(name: str):
    if name == "create_app":
        from mka_core.serve.factory import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
