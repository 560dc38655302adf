"""Converters of the released Make-An-Audio checkpoints into mka model folders.

* :mod:`~mka_core.convert.maa1` - family A (``maa1_full.ckpt`` + its BigVGAN folder);
* :mod:`~mka_core.convert.maa_b` - family B (ta40multi, ta54, inpaint7 of the hosted demos);
* shared: safe reading (:mod:`.checkpoint`), key signatures (:mod:`.families`), per-tensor
  accounting (:mod:`.accounting`), module filling and staged output (:mod:`.common`), and the
  component mappings (:mod:`.ldm`, :mod:`.text_encoder`, :mod:`.openclip`, :mod:`.vocoder`).

The command line is ``mka convert`` (:mod:`mka_core.cli.convert`).
"""
