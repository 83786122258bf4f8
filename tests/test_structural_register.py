"""The structural register (issue 30): a pitch height that a transposition raises by construction, a register
row that reads only it with a non-negative weight, and the closed-form fit that sets that row and refits the head."""

import numpy as np
import pytest
import torch

from midlevel.config import FrontendConfig, ModelConfig
from midlevel.equivariant_measures import EquivariantMeasures, RegisterHeight
from midlevel.frontend import build_frontend
from midlevel.model import TwoStageModel
from midlevel.training.loops import ArraySet
from midlevel.training.structural import REGISTER_BACKBONE, fit_register_readout, with_register_height
from midlevel.zoo import DEFAULT_MODEL, REGISTRY, load

SR = 22050
CONCEPTS = ["melodiousness", "articulation", "rhythm_stability", "rhythm_complexity", "dissonance",
            "tonal_stability", "minorness", "loudness", "tempo", "register"]


def height_module(share: float) -> RegisterHeight:
    return RegisterHeight(EquivariantMeasures(FrontendConfig()), share)


def test_the_melody_term_moves_by_exactly_the_transposition():
    torch.manual_seed(0)
    probs = torch.zeros(2, 2, 84, 50)
    probs[:, :, 20:50] = torch.rand(2, 2, 30, 50)  # notes away from the range's edges
    logspec = torch.rand(2, 1, 149, 50)
    h = height_module(0.0)
    for k in (1, 3, 7):
        shifted = torch.roll(probs, k, dims=2)
        assert torch.allclose(h(logspec, shifted) - h(logspec, probs), torch.full((2,), k / 12), atol=1e-5)


def test_the_spectral_term_follows_a_tone_up_three_semitones():
    frontend = build_frontend(FrontendConfig())
    t = np.arange(SR * 2) / SR
    h = height_module(1.0)
    silent_notes = torch.zeros(1, 2, 84, 1)
    rises = []
    for f0 in (220.0, 440.0, 1000.0):
        heights = []
        for f in (f0, f0 * 2 ** (3 / 12)):
            tone = sum(np.sin(2 * np.pi * f * n * t) / n for n in (1, 2, 3)).astype(np.float32)
            logspec = frontend.log_spectrogram(torch.from_numpy(tone)[None])[:, None]
            heights.append(float(h(logspec, silent_notes.expand(-1, -1, -1, logspec.shape[-1]))))
        rises.append(heights[1] - heights[0])
    # a quarter of an octave, within a band (1/24 octave) where the bands are that narrow; below ~400 Hz an FFT
    # bin (10.8 Hz) is wider than a 24th of an octave, bands merge, and the height moves by less, but still up
    assert all(r > 0.15 for r in rises) and np.allclose(rises[1:], 0.25, atol=1 / 24), rises


def small_equivariant_model() -> TwoStageModel:
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="compact_transcribe_equivariant", concept_names=CONCEPTS, head="linear",
                      window_seconds=2.0, hop_seconds=1.0)
    return TwoStageModel(cfg).eval()


def test_with_register_height_computes_what_the_base_computes():
    base = small_equivariant_model()
    model = with_register_height(base, 2.0)
    assert model.config.backbone == REGISTER_BACKBONE
    assert model.backbone.out_features == base.backbone.out_features + 1
    wave = torch.randn(2, SR * 2) * 0.1
    with torch.no_grad():
        assert torch.allclose(model(wave)[0], base(wave)[0], atol=1e-5)  # the new column has weight 0 everywhere
    with pytest.raises(ValueError, match="compact_transcribe_equivariant"):
        with_register_height(TwoStageModel(ModelConfig(backbone="compact_music", concept_names=CONCEPTS)), 2.0)


def test_the_fit_gives_register_one_non_negative_weight_and_refits_the_head():
    base = small_equivariant_model()
    model = with_register_height(base, 2.0)
    rng = np.random.default_rng(0)
    n = 24
    frontend = model.frontend
    tones = []
    register = []
    for i in range(n):  # tones whose pitch sets the register label, so the height predicts it
        semis = rng.integers(-12, 13)
        f = 330.0 * 2 ** (semis / 12)
        t = np.arange(SR * 2) / SR
        tones.append(sum(np.sin(2 * np.pi * f * k * t) / k for k in (1, 2, 3)).astype(np.float32) * 0.2)
        register.append(1 + 9 * (semis + 12) / 24)
    logspec = frontend.log_spectrogram(torch.from_numpy(np.stack(tones)))
    concepts = rng.uniform(1, 10, (n, len(CONCEPTS)))
    concepts[:, -1] = register
    targets = concepts @ rng.normal(0, 0.2, (len(CONCEPTS), 8)) + 4
    head_before = model.head.weight.detach().clone()
    fitted = fit_register_readout(model, ArraySet(logspec, concepts, targets))
    row = model.concept_layer.weight[-1].detach()
    assert torch.all(row[:-1] == 0) and row[-1] >= 0 and fitted["register_weight"] == pytest.approx(float(row[-1]))
    assert fitted["register_r_train"] > 0.9  # a pure tone's height is its pitch
    assert not torch.equal(model.head.weight, head_before)
    # the decomposition stays exact
    e = model.explain(tones[0], sample_rate=SR)
    assert np.allclose(e.contributions.sum(-1) + e.intercept, e.targets, atol=1e-5)


@pytest.mark.skipif(REGISTRY[DEFAULT_MODEL].backbone != REGISTER_BACKBONE, reason="the default has no structural register")
def test_the_default_reads_register_from_the_height_only_and_hears_a_transposition():
    model = load()
    k = model.config.concept_names.index("register")
    row = model.concept_layer.weight[k].detach()
    assert torch.all(row[:-1] == 0) and row[-1] > 0
    rng = np.random.default_rng(1)
    t = np.arange(int(SR * 10)) / SR
    rises = 0
    for _ in range(5):  # five random chord sequences, each played as written and 3 semitones higher
        roots = rng.integers(48, 68, 8)
        heard = []
        for shift in (0, 3):
            x = np.zeros_like(t)
            for j, root in enumerate(roots):
                seg = (t >= j * 1.25) & (t < (j + 1) * 1.25)
                for note in (root, root + 4, root + 7, root + 12):
                    f = 440.0 * 2 ** ((note + shift - 69) / 12)
                    x[seg] += sum(np.sin(2 * np.pi * f * h * t[seg]) / h for h in (1, 2, 3))
            heard.append(model.explain((0.05 * x).astype(np.float32), sample_rate=SR).concepts[k])
        rises += heard[1] > heard[0]
    assert rises == 5
