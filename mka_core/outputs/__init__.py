"""Writing generated outputs: audio files, JSON sidecars, spectrograms.

Below both ``mka generate`` (:mod:`mka_core.cli.generate`) and ``mka serve``
(:mod:`mka_core.serve.runtime`): :mod:`.files` names and publishes an output's files
atomically, :mod:`.sidecar` is the sidecar document (and reads old ones), :mod:`.writer`
writes a :class:`~mka_core.pipeline.GenerationResult`'s outputs.
"""
