"""Training for mka: data manifests and preparation, the trainer, trainable targets, recipes.

Layout: ``data/`` (manifest, prepare, dataset, reprogramming, distillation, the synthetic corpus),
``targets/`` (one module per trainable thing: vae, diffusion, inpaint, vocoder, conditioner),
``losses/``, ``recipes/*.toml``, ``evaluation/`` (``mka eval``), ``cli/`` (the ``train``,
``data`` and ``eval`` commands, registered through the same plugin hook a third party uses).
"""
