"""Dynamic reprogramming: events appended in order, captions composed exactly from the templates."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from mka_core.errors import InputError
from training.data.manifest import ManifestRow, write_manifest
from training.data.reprogram import (
    ADJECTIVES,
    NOUNS,
    QUANTIFIERS,
    TEMPLATES,
    VERBS,
    Reprogrammer,
    reprogrammer_for_manifest,
    template_events,
)

ONE_WORD = {"v": ["heard"], "a": ["loud"], "n": ["sound"], "q": ["a"]}


def clip(value: float, length: int) -> np.ndarray:
    return np.full(length, value, dtype=np.float32)


DATABASE = [(clip(0.1, 300), "dog bark"), (clip(0.2, 500), "car horn"), (clip(0.3, 700), "bell")]


def only(n: int) -> list[float]:
    return [1.0 if i == n else 0.0 for i in range(3)]


def expected_caption(template: str, own: str, events: list[str]) -> str:
    text = template.replace("<text>", own).replace("<v>", "heard")
    for i, label in enumerate(events, start=1):
        text = text.replace(f"<e{i}>", f"a loud {label} sound")
    return text


def test_the_twelve_templates_cover_zero_one_and_two_events():
    assert len(TEMPLATES) == 12 and len(set(TEMPLATES)) == 12
    assert [template_events(t) for t in TEMPLATES] == [0] * 4 + [1] * 4 + [2] * 4
    assert all(len(words) >= 3 for words in (VERBS, ADJECTIVES, NOUNS, QUANTIFIERS))


@pytest.mark.parametrize("index", range(12))
def test_every_template_is_produced_exactly(index):
    template = TEMPLATES[index]
    n = template_events(template)
    item = clip(0.9, 200)
    for text, is_label in (("a man speaks", False), ("dog bark", True)):
        if n == 0 and not is_label:
            continue  # a caption with no extra event is kept as it is (tested below)
        program = Reprogrammer(DATABASE, templates=[template], seed=0, probabilities=only(n), words=ONE_WORD)
        rng = np.random.default_rng(index)
        result = program.apply(item, text, rng)
        labels = result.labels
        own = f"a loud {text} sound" if is_label else text
        assert result.template == template
        assert result.caption == expected_caption(template, own, labels)
        # The audio is exactly the item followed by the drawn clips, in the order the caption names them.
        audio_of = {label: audio for audio, label in DATABASE}
        pieces = [item] + [audio_of[label] for label in labels]
        assert np.array_equal(result.audio, np.concatenate(pieces))
        assert len(labels) == n and len(set(labels)) == n  # distinct clips


def test_label_only_items_become_captioned_and_captions_are_kept_with_no_event():
    program = Reprogrammer(DATABASE, seed=0, probabilities=only(0), words=ONE_WORD)
    rng = np.random.default_rng(0)
    audio, caption = program(clip(0.5, 100), "A man speaks.", rng)
    assert caption == "A man speaks." and np.array_equal(audio, clip(0.5, 100))
    for _ in range(20):
        _, caption = program(clip(0.5, 100), "bell", rng)  # a database label
        assert caption in {expected_caption(t, "a loud bell sound", []) for t in TEMPLATES[:4]}
    row = ManifestRow(name="r", caption="", audio_path="x.wav", extra={"labels": "car horn"})
    _, caption = program(clip(0.5, 100), row, rng)
    assert "a loud car horn sound" in caption
    with pytest.raises(InputError, match="neither a caption nor a label"):
        program(clip(0.5, 100), ManifestRow(name="r", caption="", audio_path="x.wav"), rng)


def test_captions_lose_their_final_period_inside_templates_and_articles_agree():
    program = Reprogrammer(DATABASE, templates=["<text> followed by <e1>"], probabilities=only(1),
                           words={**ONE_WORD, "a": ["eerie"]})
    _, caption = program(clip(0.5, 10), "A man speaks.", np.random.default_rng(1))
    assert caption.startswith("A man speaks followed by an eerie ")


def test_n_follows_the_probabilities_and_every_choice_comes_from_the_rng():
    program = Reprogrammer(DATABASE, seed=0, probabilities=[0.2, 0.3, 0.5])
    counts = np.zeros(3)
    for i in range(600):
        counts[len(program.apply(clip(0.5, 10), "a man speaks", np.random.default_rng(i)).events)] += 1
    assert np.allclose(counts / 600, [0.2, 0.3, 0.5], atol=0.07)
    a = program.apply(clip(0.5, 10), "a man speaks", np.random.default_rng(42))
    b = program.apply(clip(0.5, 10), "a man speaks", np.random.default_rng(42))
    assert a.caption == b.caption and np.array_equal(a.audio, b.audio)
    words_seen = {w for i in range(200) for w in program.apply(clip(0.5, 10), "bell", np.random.default_rng(i)).caption.split()}
    assert {"loud", "soft"} <= words_seen and "sound" in words_seen


def test_max_samples_drops_events_rather_than_misdescribing_the_audio():
    program = Reprogrammer(DATABASE, seed=0, probabilities=only(2), max_samples=250)
    result = program.apply(clip(0.5, 200), "a man speaks", np.random.default_rng(0))
    assert result.events == [] and result.caption == "a man speaks" and len(result.audio) == 200


def test_bad_configurations_are_one_sentence_errors():
    with pytest.raises(InputError, match="summing to 1"):
        Reprogrammer(DATABASE, probabilities=[0.5, 0.5, 0.5])
    with pytest.raises(InputError, match="no template describes 2"):
        Reprogrammer(DATABASE, templates=["<text> then <e1>"], probabilities=[0.5, 0.25, 0.25])
    with pytest.raises(InputError, match="<who>"):
        Reprogrammer(DATABASE, templates=["<who> then <e1>"])
    with pytest.raises(InputError, match="exactly once"):
        Reprogrammer(DATABASE, templates=["<e1> then <e2>"])
    with pytest.raises(InputError, match="non-empty label"):
        Reprogrammer([(clip(0.1, 10), "")])
    with pytest.raises(InputError, match="empty"):
        Reprogrammer([], probabilities=[0.5, 0.5, 0.0])
    with pytest.raises(InputError, match="mono"):
        Reprogrammer(DATABASE)(np.zeros((2, 2, 2)), "x", np.random.default_rng(0))


def test_from_a_manifest_as_the_diffusion_dataset_uses_it(tmp_path):
    rows = []
    for i, (label, freq) in enumerate([("beep", 800), ("hum", 120)]):
        path = tmp_path / f"{label}.wav"
        sf.write(path, (0.3 * np.sin(2 * np.pi * freq * np.arange(8000) / 16000)).astype(np.float32), 16000)
        rows.append(ManifestRow(name=label, caption="", audio_path=str(path), extra={"labels": label}))
    rows.append(ManifestRow(name="multi", caption="", audio_path=str(tmp_path / "beep.wav"), extra={"labels": "beep;hum"}))
    manifest = write_manifest(tmp_path / "db.tsv", rows)
    transform = reprogrammer_for_manifest(manifest, probabilities=only(1), seed=3)
    assert len(transform.database) == 2  # the two-label row is not a database clip
    audio, caption = transform(np.zeros(1600, dtype=np.float32), rows[2], np.random.default_rng(5))
    assert len(audio) == 1600 + 8000 and ("beep" in caption or "hum" in caption)
    import pickle

    assert pickle.loads(pickle.dumps(transform)).apply(np.zeros(10), "x y", np.random.default_rng(0)).events
    with pytest.raises(InputError, match="single-label"):
        reprogrammer_for_manifest(write_manifest(tmp_path / "none.tsv", rows[2:]))
