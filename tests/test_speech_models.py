"""An explainable spoken-digit model trained on a small synthesised corpus (36 voices, one repetition each),
asked about voices it never heard: it names the digit, and the explanation of "seven" credits the sibilant,
the /v/ and the nasal (issue 33). Real synthesisers, the library's own training, no mocks."""

import shutil

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("parselmouth")
if not all(shutil.which(p) for p in ("espeak-ng", "flite", "festival")):
    pytest.skip("speech synthesisers missing (scripts/install-system-deps.sh)", allow_module_level=True)

import torch  # noqa: E402

from midlevel import load  # noqa: E402
from midlevel.audio import load_audio  # noqa: E402
from midlevel.datasets.spoken_corpus import DIGIT_PHONE_CLASSES  # noqa: E402
from midlevel.datasets.spoken_digits import build_spoken_digits  # noqa: E402
from midlevel.datasets.spoken_digits.voices import Voice  # noqa: E402
from midlevel.explain.timeline import timeline  # noqa: E402
from midlevel.training.speech import train_speech_models  # noqa: E402

#: 33 training voices: five espeak-ng accents x six variants, two flite voices, festival's reference voice
TRAIN = [Voice("espeak-ng", accent, variant, "female" if variant.startswith("f") else "male")
         for accent in ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp")
         for variant in ("m1", "m2", "m3", "f1", "f2", "f4")]
TRAIN += [Voice("flite", "kal", "", "male"), Voice("flite", "slt", "", "female"),
          Voice("festival", "kal_diphone", "", "male")]
VAL = [Voice("espeak-ng", "en-gb-x-gbcwmd", "m5", "male")]
#: neither their accent nor their variant (espeak-ng) nor the voice (flite) was heard in training
TEST = [Voice("espeak-ng", "en-gb-x-gbclan", "m7", "male"), Voice("espeak-ng", "en-gb-x-gbclan", "f5", "female"),
        Voice("flite", "rms", "", "male")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(2)
    corpus = tmp_path_factory.mktemp("speech") / "corpus"
    build_spoken_digits(corpus, reps=2, seed=0, voices=TRAIN + VAL + TEST, workers=2, progress=False)
    labels = pd.read_csv(corpus / "labels.csv")
    split = {v.speaker: s for s, voices in (("train", TRAIN), ("val", VAL), ("test", TEST)) for v in voices}
    labels["split"] = labels["speaker"].map(split)  # a split by hand: these voices held out
    labels.to_csv(corpus / "labels.csv", index=False)
    out = corpus.parent / "run"
    results = train_speech_models(corpus, out, task="digit", epochs=80, black_box=False, progress=False)
    return corpus, labels, load(out / "models" / "explainable"), results


ESPEAK_TEST = {v.speaker for v in TEST if v.engine == "espeak-ng"}


@pytest.mark.slow
def test_unseen_voices_are_understood(trained):
    corpus, labels, model, results = trained
    test = results["models"]["explainable"]["test"]
    assert test["voices"] == 3 and test["accuracy"] >= 0.8, test  # measured 0.867: flite's rms is the hard one
    right = [model.explain(load_audio(str(corpus / f), model.config.sample_rate)).predicted_class == w
             for f, w, s in zip(labels["file"], labels["word"], labels["speaker"]) if s in ESPEAK_TEST]
    assert np.mean(right) >= 0.9, np.mean(right)  # espeak-ng accents and variants never heard: measured 1.0
    # trained on 0.3 s crops, a concept read on the whole 1.2 s clip is diluted (it is heard in part of it):
    # its r is what holds (measured 0.68-0.85 here, 0.94 on average on the full corpus)
    assert all(c["r"] >= 0.6 for c in test["concepts"].values()), test["concepts"]


@pytest.mark.slow
def test_seven_is_explained_by_its_sibilant_its_v_and_its_nasal_and_the_hiss_comes_first(trained):
    """On held-out voices the logit of "seven" is mostly its phones' doing, and the timeline (windows of the
    crop length the concepts were trained on) finds each of the sibilant and the nasal in a window that holds
    that phone (its span as the synthesiser aligned it), the hiss first."""
    corpus, labels, model, _ = trained
    sevens = labels[(labels["word"] == "seven") & labels["speaker"].isin(ESPEAK_TEST)]
    assert len(sevens) == 2 * len(ESPEAK_TEST)  # two repetitions each
    for _, row in sevens.iterrows():
        e = model.explain(load_audio(str(corpus / row["file"]), model.config.sample_rate))
        np.testing.assert_allclose(e.intercept + e.contributions.sum(axis=1), e.targets, atol=1e-9)
        assert e.predicted_class == "seven", (row["speaker"], e.probabilities.round(3))
        terms = e.contributions[e.target_names.index("seven")]
        # the word's own phone classes are its largest terms, each positive, above every class it lacks (a
        # top-5 cut used to drop one of the six: the sibilant and the schwa's vowel_open sit 0.03 apart for m7)
        own = DIGIT_PHONE_CLASSES["seven"]
        top = [e.concept_names[k] for k in np.argsort(-terms)[:len(own)]]
        assert set(top) == own, (row["speaker"], top, terms.round(2))
        assert all(terms[e.concept_names.index(c)] > 0 for c in own), (row["speaker"], terms.round(2))
        window = model.config.metadata["timeline_window_seconds"]
        line = timeline(model, load_audio(str(corpus / row["file"]), model.config.sample_rate),
                        window_seconds=window, hop_seconds=0.01)
        peaks = {}
        for concept in ("sibilant", "nasal"):  # the strongest window overlaps the phone: its centre lies within
            peaks[concept] = heard_at(line, concept)  # half a window of the phone's span
            miss = max(row[f"{concept}_start_s"] - peaks[concept], peaks[concept] - row[f"{concept}_end_s"], 0.0)
            assert miss < window / 2, (row["speaker"], concept, peaks[concept], miss)
        assert peaks["sibilant"] < peaks["nasal"], (row["speaker"], peaks)
    # measured with training seeds 0-3: every peak within 0.12 s of its phone (half a window: 0.15 s), the
    # sibilant first. An earlier check, positions in fixed fractions of the word (sibilant in the first quarter,
    # nasal in the second half), flipped with a 1e-7 change of the front-end's magnitude: a 0.3 s window
    # centred at 0.46 of a 0.5 s word still holds its final /n/


def heard_at(line, concept: str) -> float:
    """Centre (s) of the window where ``concept`` is strongest."""
    return float(line.centres[int(np.argmax(line.concepts[:, line.concept_names.index(concept)]))])
