"""Public weights by name: the catalogue, verified downloads and conversion on arrival.

* :mod:`.catalogue` - the ``[[weights]]`` entries of ``plugin_registry.toml`` as objects;
* :mod:`.checksums` - sha256 of downloaded files: the catalogue's, else the one recorded in
  ``$MKA_HOME/weights/checksums.json`` after the first verified pull;
* :mod:`.fetch` - one file from the Hugging Face Hub (``huggingface_hub``: its cache,
  ``HF_ENDPOINT``, ``HF_TOKEN``, resumed transfers) or from a plain HTTPS address;
* :mod:`.pull` - ``mka weights pull NAME``: dependencies, download, checks, then the converted
  model in ``$MKA_HOME/models/NAME`` or the files in ``$MKA_HOME/weights/NAME``;
* :mod:`.status` - what ``mka weights`` shows per entry (pulled / converted / missing, disk).

Nothing here touches the network unless the caller allowed it (``--allow-network`` or
``MKA_ALLOW_NETWORK=1``).
"""
