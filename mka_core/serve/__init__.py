"""`mka serve`: a local web app and JSON API over one model kept in memory.

Layout (one idea per module):

* :mod:`.limits` - the safe defaults (upload sizes, queue length, request bounds);
* :mod:`.folders` - the app's own folders and the random ids that name everything in them;
* :mod:`.security` - access token, Host and Origin checks;
* :mod:`.uploads` - receiving, sniffing and validating uploaded images, videos and audio;
* :mod:`.mask_boxes` - the boxes drawn on a spectrogram as an inpainting mask;
* :mod:`.requests` - the JSON body of a generation request;
* :mod:`.runtime` - the model in memory: describing it, analysing audio, running a job;
* :mod:`.jobs` - the queue and its single worker thread;
* :mod:`.api` - the routes of the JSON API and the static page;
* :mod:`.server` - the HTTP server that ties them together.

See ``docs/serve.md``.
"""
