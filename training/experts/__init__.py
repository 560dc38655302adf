"""Built-in caption experts for ``mka data caption`` (expert distillation, Make-An-Audio section 3.1).

Registered through ``register_caption_experts``, the hook a third-party plugin uses:

* ``clap-retrieval`` (:mod:`.clap_retrieval`) - a retriever: LAION-CLAP audio embeddings of a
  captioned corpus; the captions of the nearest corpus clips are the candidates;
* ``panns-tags`` (:mod:`.panns_tags`) - a captioner: the PANNs Cnn14 AudioSet tagger's top tags
  composed into captions with mka's caption templates (``training.data.reprogram``).

They live in ``training`` (not ``mka_plugins``) because they build on the distillation contract
(:class:`training.data.distill.CaptionExpert`) and manifests, and plugins never import ``training``;
the tagger and CLAP come through the plugin registry. Their weights come from ``mka weights pull laion-clap-630k-audioset`` and ``mka weights pull
panns-cnn14``; each expert loads them when ``mka data caption`` starts.
"""

from __future__ import annotations

from mka_core.plugins.hookspecs import hookimpl


@hookimpl
def register_caption_experts(register):
    from training.experts.clap_retrieval import ClapRetrievalExpert
    from training.experts.panns_tags import PannsTagsExpert

    register(ClapRetrievalExpert)
    register(PannsTagsExpert)
