"""The procedural sound-event corpus behind ``mka data synth``.

Sixteen everyday sound classes (:data:`CLASSES`) are synthesised from scratch with numpy and
scipy, alone or in two-class compositions ("X then Y", "X while Y", "X in the background"),
with varied pitch, rate, envelope, timbre, loudness, room and background noise, and captioned
in varied natural language. See docs/corpus.md.

* :func:`generate_corpus` writes a whole corpus folder;
* :func:`render_clip` makes one clip's waveform for a class (or composition) and a seed;
* :func:`make_caption` gives a caption for the same spec and seed.
"""

from training.data.synth.captions import compose_caption
from training.data.synth.corpus import (
    SYNTH_VERSION,
    CorpusResult,
    generate_corpus,
    plan_corpus,
    split_counts,
)
from training.data.synth.dsp import SAMPLE_RATE
from training.data.synth.events import CLASSES, EVENT_CLASSES, event_class
from training.data.synth.scenes import (
    MODES,
    ClipSpec,
    render_clip,
    sample_scene,
    streams,
)


def make_caption(spec, seed: int, split: str = "train") -> str:
    """The caption :func:`generate_corpus` would give ``spec`` drawn with ``seed`` in ``split``."""
    spec = ClipSpec.coerce(spec)
    scene_rng, _, caption_rng = streams(seed)
    scene = sample_scene(spec, scene_rng)
    caption, _ = compose_caption(spec.mode, [(e.name, e.params["tags"]) for e in scene.events], scene.tags, split,
                                 caption_rng)
    return caption


__all__ = ["CLASSES", "EVENT_CLASSES", "MODES", "SAMPLE_RATE", "SYNTH_VERSION", "ClipSpec", "CorpusResult",
           "event_class", "generate_corpus", "make_caption", "plan_corpus", "render_clip", "split_counts"]
