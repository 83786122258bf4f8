"""The equivariant augmentation and measurements (issue 30): a transposition or a stretch moves the
register and tempo labels, and the measurements, by the amount the definitions say."""

from dataclasses import replace

import librosa
import numpy as np
import pytest
import torch

from conftest import sine
from midlevel.config import FrontendConfig, ModelConfig
from midlevel.equivariant_measures import NAMES, EquivariantMeasures
from midlevel.frontend import LogFrequencySpectrogram
from midlevel.model import TwoStageModel
from midlevel.training.augment import EquivariantAugmentation, stretch_batch
from midlevel.training.loops import TrainSettings
from midlevel.training.recipes import warm_start

CFG = FrontendConfig()
SR = CFG.sample_rate


def logspec(wave: np.ndarray) -> torch.Tensor:
    return LogFrequencySpectrogram(CFG).log_spectrogram(torch.from_numpy(wave.astype(np.float32))[None])


def clicks(bpm: float, seconds: float = 10.0) -> np.ndarray:
    """Short decaying noise bursts every beat."""
    rng = np.random.default_rng(0)
    x = np.zeros(int(seconds * SR), dtype=np.float32)
    burst = (rng.standard_normal(600) * np.exp(-np.arange(600) / 100)).astype(np.float32) * 0.5
    for t in np.arange(0, seconds - 0.1, 60.0 / bpm):
        i = int(t * SR)
        x[i:i + 600] += burst
    return x


def test_stretch_is_linear_interpolation_along_time():
    ramp = torch.arange(100, dtype=torch.float32).expand(2, 3, 100)
    out = stretch_batch(ramp, torch.tensor([1.0, 1.5]))
    assert out.shape[-1] == 67  # the fastest clip reads frames 0, 1.5, ..., 99
    torch.testing.assert_close(out[0], ramp[0, :, :67])
    torch.testing.assert_close(out[1, 0], torch.arange(67, dtype=torch.float32) * 1.5)


def test_augmented_labels_move_with_the_spectrum():
    """A single partial at 1 kHz: the peak band moves 2 bands per semitone of the register label's move
    (24 bands per octave), stretched clips keep the peak, and unchanged clips are returned unchanged."""
    spec = logspec(sine(1000.0, 4.0))[0].expand(64, -1, -1).clone()
    labels = torch.full((64, 3), 5.5)
    labels[:8, 2] = 9.8  # near the top: may only move down
    aug = EquivariantAugmentation(CFG, ["dissonance", "tempo", "register"], semitones=4, stretch=1.4)
    out, moved, unchanged = aug(spec, labels, torch.Generator().manual_seed(1))
    per_semitone, per_log = 9 / 24, 9 / np.log(170 / 50)
    peak = spec[0].mean(-1).argmax()
    shifted_bands = out.mean(-1).argmax(-1) - peak
    semitones = (moved[:, 2] - labels[:, 2]) / per_semitone
    torch.testing.assert_close(shifted_bands.float(), 2 * semitones.round())
    assert (semitones.abs() > 0).sum() > 10 and ((moved[:, 1] - labels[:, 1]).abs() > 0.01).sum() > 10
    assert ((moved[:, 1] != labels[:, 1]) & (moved[:, 2] != labels[:, 2])).sum() == 0  # one move per clip
    assert ((moved >= 1.0) & (moved <= 10.0)).all() and (moved[:8, 2] <= 9.8).all()
    torch.testing.assert_close(moved[:, 0], labels[:, 0])
    torch.testing.assert_close(out[unchanged], spec[unchanged][..., :out.shape[-1]])
    assert unchanged.float().mean() == pytest.approx(1 / 3, abs=0.15)
    log_s = (moved[:, 1] - labels[:, 1]) / per_log
    assert log_s.abs().max() <= np.log(1.4) + 1e-6


def test_equivariant_augmentation_excludes_the_black_box_and_label_keeping_transposition():
    with pytest.raises(ValueError, match="a2e"):
        TrainSettings(setup="a2e", equivariant_stretch=1.3)
    with pytest.raises(ValueError, match="exclude"):
        TrainSettings(transpose_semitones=2, equivariant_semitones=2)
    with pytest.raises(ValueError):
        TrainSettings(equivariant_stretch=0.8)


def measures(wave: np.ndarray) -> dict[str, float]:
    m = EquivariantMeasures(CFG)
    spec = logspec(wave)[:, None]  # (1, 1, bands, t)
    probs = torch.zeros(1, 2, 84, spec.shape[-1])
    flux = torch.relu(spec[:, 0, :, 1:] - spec[:, 0, :, :-1]).sum(1, keepdim=True)  # one onset envelope
    return dict(zip(NAMES, m(spec, probs, flux)[0].tolist()))


def test_spectral_heights_follow_a_pitch_shift():
    """librosa's pitch shift of a harmonic tone moves both heights up by most of the shift (0.25 octave):
    the vocoder's smeared low-level energy pulls the magnitude-weighted mean back a little."""
    tone = sum(sine(220.0 * h, 4.0, amp=0.3 / h) for h in range(1, 6))
    base = measures(tone)
    up = measures(librosa.effects.pitch_shift(tone.astype(np.float32), sr=SR, n_steps=3))
    for name in ("spectral_height", "power_height"):
        assert 0.15 < up[name] - base[name] < 0.28, name


def test_onset_and_pulse_rates_follow_the_tempo():
    slow, fast = measures(clicks(90.0)), measures(clicks(135.0))
    for name in ("log_onset_rate", "log_peak_rate", "log_band_peak_rate"):
        assert fast[name] - slow[name] == pytest.approx(np.log(1.5), abs=0.1), name
    assert fast["log_pulse_rate"] - slow["log_pulse_rate"] == pytest.approx(np.log(1.5), abs=0.1)
    # a gain change leaves both (and the heights) where they were
    quiet = measures(clicks(90.0) * 0.25)
    assert quiet["log_pulse_rate"] == pytest.approx(slow["log_pulse_rate"], abs=0.02)


def test_the_added_path_starts_at_zero_so_a_warm_start_computes_what_it_did():
    cfg = ModelConfig(backbone="compact_transcribe_measures", concept_names=["a", "b"], target_names=["x"])
    torch.manual_seed(0)
    old = TwoStageModel(cfg).eval()
    new = warm_start(TwoStageModel(replace(cfg, backbone="compact_transcribe_equivariant")), old).eval()
    wave = torch.from_numpy(clicks(100.0, 3.0))[None]
    with torch.no_grad():
        torch.testing.assert_close(new.concepts_from_waveform(wave), old.concepts_from_waveform(wave))
        # and the measurements do reach the network once the path is trained
        new.backbone.equivariant_in[1].weight.fill_(0.1)
        assert not torch.allclose(new.concepts_from_waveform(wave), old.concepts_from_waveform(wave))


def test_the_measurements_export_to_onnx(tmp_path):
    """onnxruntime computes the same window concepts as torch for the extended backbone."""
    ort = pytest.importorskip("onnxruntime")
    from midlevel.export import export_onnx
    torch.manual_seed(0)
    model = TwoStageModel(ModelConfig(backbone="compact_transcribe_equivariant", name="test-equivariant")).eval()
    with torch.no_grad():
        model.backbone.equivariant_in[1].weight.normal_(0, 0.5)
    path = export_onnx(model, tmp_path / "m.onnx")
    wave = (clicks(110.0, 6.0) + sine(330.0, 6.0, amp=0.2)).astype(np.float32)
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"wave": wave[None]})
    names = [o.name for o in ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_outputs()]
    got = dict(zip(names, out))
    np.testing.assert_allclose(got["window_concepts"][0], model.explain(wave, sample_rate=SR).window_concepts, atol=2e-4)
