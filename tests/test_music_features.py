"""The pitch-class, pitch-motion and rhythm descriptors hear what they claim, on synthesised audio."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from midlevel import ModelConfig, TwoStageModel, example_clip
from midlevel.explain.attribution import SpectrogramNet
from midlevel.explain.posthoc import last_conv_block, posthoc_maps
from midlevel.export import export_onnx
from midlevel.model import BlackBoxModel
from midlevel.audio import load_audio
from midlevel.backbones import CompactMusicBackbone
from midlevel.config import FrontendConfig
from midlevel.frontend import LogFrequencySpectrogram
from midlevel.music_features import (KK_MAJOR, KK_MINOR, PitchClassFeatures, PitchMotionFeatures, PulseFeatures,
                                     RhythmFeatures, TemporalContext, band_centres, chroma_matrix)
from midlevel.training.loops import TrainSettings

SR = 22050
CFG = FrontendConfig()


def tone(midi: float, seconds: float, partials: int = 6) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    wave = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, partials + 1) if k * f0 < SR / 2)
    return (0.1 * wave * np.hanning(len(t)) ** 0.1).astype(np.float32)


def chords(progression, seconds: float = 1.0) -> np.ndarray:
    return np.concatenate([sum(tone(m, seconds) for m in chord) for chord in progression])


def melody(notes, seconds: float = 0.5) -> np.ndarray:
    return np.concatenate([tone(m, seconds) for m in notes])


def whitened(wave: np.ndarray) -> torch.Tensor:
    """The descriptors' input: a backbone with identity statistics sees the raw log spectrogram."""
    spec = LogFrequencySpectrogram(CFG)(torch.from_numpy(wave)[None])
    return CompactMusicBackbone(CFG).whiten(spec)


C_MAJOR = [(60, 64, 67), (65, 69, 72), (67, 71, 74), (60, 64, 67)] * 2  # I IV V I
C_MINOR = [(60, 63, 67), (65, 68, 72), (67, 71, 74), (60, 63, 67)] * 2  # i iv V i


def test_chroma_matrix_sends_a_bands_centre_to_its_pitch_class():
    m = chroma_matrix(CFG)
    assert m.shape == (149, 12)
    used = m.sum(1) > 0
    np.testing.assert_allclose(m[used].sum(1), 1.0, atol=1e-6)
    a4_band = np.argmin(np.abs(band_centres(CFG) - 440.0))
    assert m[a4_band].argmax() == 9  # A


def test_key_fit_is_exactly_invariant_to_rotating_the_profile(rng):
    templates = torch.tensor([KK_MAJOR, KK_MINOR])
    profiles = torch.from_numpy(rng.random((5, 12))).float()
    fit = PitchClassFeatures.template_fit(profiles, templates)
    for k in range(1, 12):
        torch.testing.assert_close(PitchClassFeatures.template_fit(torch.roll(profiles, k, dims=1), templates), fit,
                                   atol=1e-6, rtol=0)
    major_profile = torch.roll(torch.tensor(KK_MAJOR), 5)  # F major
    fit = PitchClassFeatures.template_fit(major_profile[None], templates)[0]
    assert fit[0] > 0.999 and fit[1] < fit[0] - 0.1


@pytest.mark.parametrize("shift", [0, 3, 7])
def test_key_templates_tell_major_from_minor_in_any_key(shift):
    # chords from C4 up: below about 200 Hz the FFT bins are a semitone apart and pitch classes
    # blur (a G3-rooted progression still gets the triads right but not the key fit's margin)
    feats = PitchClassFeatures(CFG)
    n_int = 12 * (1 + len(feats.lags))
    out = {}
    for mode, prog in (("major", C_MAJOR), ("minor", C_MINOR)):
        wave = chords([tuple(m + shift for m in chord) for chord in prog])
        with torch.no_grad():
            out[mode] = feats(whitened(wave))[0]
    n_chords = feats.chord_templates.shape[0]
    key = {mode: float(o[n_int] - o[n_int + 1]) for mode, o in out.items()}  # major minus minor key fit
    chord = {mode: o[-2 * n_chords:-2 * n_chords + 2] for mode, o in out.items()}  # mean triad fits
    assert key["major"] > 0 and key["major"] > key["minor"] + 0.1  # relative keys share notes, so no wide margin
    assert chord["major"][0] > chord["major"][1] + 0.1
    assert chord["minor"][1] > chord["minor"][0] + 0.1


def test_simultaneous_intervals_show_a_fifth_not_a_second():
    feats = PitchClassFeatures(CFG)
    with torch.no_grad():
        fifth = feats.interval_profile(feats.pitch_classes(whitened(chords([(57, 64)], 3.0))), 0)[0]
        second = feats.interval_profile(feats.pitch_classes(whitened(chords([(57, 59)], 3.0))), 0)[0]
    # partials add intervals of their own, so compare the two dyads rather than bins of one
    assert fifth[5] + fifth[7] > 1.25 * (second[5] + second[7])
    assert second[2] + second[10] > 1.5 * (fifth[2] + fifth[10])
    torch.testing.assert_close(fifth[1:], fifth[1:].flip(0), atol=1e-6, rtol=0)  # s and 12 - s pair up


def test_pitch_motion_sees_octave_leaps_that_pitch_classes_cannot():
    motion = PitchMotionFeatures(CFG, lags=(16,))
    centre = motion.max_shift
    with torch.no_grad():
        leaps = motion(whitened(melody([69, 81] * 6)))[0]
        steps = motion(whitened(melody([69, 71] * 6)))[0]
        pcs = PitchClassFeatures(CFG)
        pc_leaps = pcs.pitch_classes(whitened(melody([69, 81] * 6))).mean(-1)
        pc_same = pcs.pitch_classes(whitened(melody([69] * 12))).mean(-1)
    octave = leaps[centre + 24] + leaps[centre - 24]
    assert octave > 3 * (steps[centre + 24] + steps[centre - 24])
    assert steps[centre + 4] + steps[centre - 4] > 3 * (leaps[centre + 4] + leaps[centre - 4])
    torch.testing.assert_close(pc_leaps, pc_same, atol=0.03, rtol=0)  # the octave is invisible to chroma


def test_a_steady_pulse_has_a_stronger_periodicity_than_jittered_onsets(rng):
    def clicks(times):
        wave = np.zeros(int(10 * SR), dtype=np.float32)
        for t in times:
            i = int(t * SR)
            wave[i:i + 400] += (rng.standard_normal(400) * np.exp(-np.arange(400) / 80)).astype(np.float32)
        return wave

    beats = np.arange(0.2, 9.8, 0.5)
    rhythm = RhythmFeatures(CFG)
    spec = LogFrequencySpectrogram(CFG)
    with torch.no_grad():
        steady = rhythm.autocorrelation(rhythm.envelopes(spec(torch.from_numpy(clicks(beats))[None])))
        jitter = beats + rng.normal(0, 0.08, len(beats))
        shaky = rhythm.autocorrelation(rhythm.envelopes(spec(torch.from_numpy(clicks(jitter))[None])))
    assert steady[0, :, 3:].amax() > shaky[0, :, 3:].amax() + 0.2
    acf = steady[0].mean(0)  # lag k + 1 at index k
    beat = 0.5 * SR / CFG.hop_length  # 15.7 frames: the peak falls on lag 15 or 16
    assert acf[int(beat) - 1:int(beat) + 1].amax() > 0.4
    assert acf[3:int(beat) - 2].amax() < 0.1  # nothing between the beats


def pulse_of(beat_times: np.ndarray, rng) -> torch.Tensor:
    """PulseFeatures of clicks at ``beat_times`` (s) in 10 s of audio."""
    wave = np.zeros(int(10 * SR), dtype=np.float32)
    for t in beat_times:
        i = int(t * SR)
        wave[i:i + 400] += (rng.standard_normal(400) * np.exp(-np.arange(400) / 80)).astype(np.float32)
    with torch.no_grad():
        env = RhythmFeatures(CFG).envelopes(LogFrequencySpectrogram(CFG)(torch.from_numpy(wave)[None]))
        return PulseFeatures()(env)[0]


def test_pulse_features_say_how_fast_the_beat_is_and_whether_it_drifts(rng):
    lags = PulseFeatures().max_lag
    feats = {period: pulse_of(np.arange(0.1, 10.0, period), rng) for period in (0.45, 0.6, 0.9)}
    for period, f in feats.items():
        frames = period * SR / CFG.hop_length
        assert f[round(frames) - 1] > 0.5  # the tempo histogram (lag k + 1 at index k) is high at the beat
        assert f[round(frames / 2) - 1] < 0.1  # and low at half of it
        # the soft period estimate, near the prior's 0.5 s (a pulse twice as fast reads as its half tempo,
        # the octave ambiguity of every autocorrelation tempo estimate; training may move the prior)
        assert abs(float(f[lags].exp()) - frames) < 1.0
    # the same tempo range, drifting: the period grows from 0.3 s to 0.6 s over the clip
    drifting = pulse_of(np.cumsum(np.linspace(0.3, 0.6, 22)) - 0.2, rng)
    steady = feats[0.45]
    assert drifting[lags + 1] > steady[lags + 1] + 0.05  # the period estimate spreads over windows
    assert drifting[lags + 3] < steady[lags + 3] - 0.2  # windows disagree with the mean autocorrelation


@pytest.mark.parametrize("backbone", ["compact_music", "compact_transcribe", "compact_transcribe_context",
                                      "compact_transcribe_pulse", "compact_transcribe_measures"])
def test_music_backbone_saves_loads_and_exports_with_its_statistics(tmp_path, backbone):
    torch.manual_seed(0)
    model = TwoStageModel(ModelConfig(backbone=backbone, name="music-test"))
    model.set_input_normalization(torch.full((149,), 0.2), torch.full((149,), 0.5))
    model.eval()
    model.save_pretrained(tmp_path / "m")
    loaded = TwoStageModel.from_pretrained(tmp_path / "m")
    torch.testing.assert_close(loaded.backbone.band_std, torch.full((149,), 0.5))
    clip = load_audio(example_clip(), SR)
    a, b = model.explain(clip), loaded.explain(clip)
    np.testing.assert_array_equal(a.concepts, b.concepts)
    export_onnx(loaded, tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for seconds in (1, 12):
        wave = clip.samples[: seconds * SR]
        out = sess.run(["concepts", "targets"], {"wave": wave[None]})
        expl = loaded.explain(wave, sample_rate=SR)
        np.testing.assert_allclose(out[0][0], expl.concepts, atol=1e-4, rtol=0)
        np.testing.assert_allclose(out[1][0], expl.targets, atol=1e-4, rtol=0)


def test_cosine_schedule_is_a_function_of_the_epoch():
    s = TrainSettings(epochs=10, lr=1e-3, lr_schedule="cosine")
    assert s.lr_at(0) == pytest.approx(1e-3) and s.lr_at(5) == pytest.approx(5e-4) and s.lr_at(10) == pytest.approx(0)
    assert TrainSettings(lr=2e-3).lr_at(7) == 2e-3
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainSettings(lr_schedule="step")


def test_post_hoc_maps_read_the_music_backbone_or_say_why_not():
    torch.manual_seed(0)
    model = BlackBoxModel(ModelConfig(kind="black_box", backbone="compact_music", window_seconds=2.0, hop_seconds=1.0))
    net = SpectrogramNet(model.eval(), "targets")
    assert last_conv_block(net) is list(net.backbone.cnn.children())[-3]  # the CNN branch: its 1x1 conv block
    wave = load_audio(example_clip(), SR).samples[: 3 * SR]
    cam = posthoc_maps(model, wave, "grad_cam", sample_rate=SR)
    assert cam.maps.shape[:2] == (8, 149) and np.isfinite(cam.maps).all() and cam.maps.max() > 0
    with pytest.raises(ValueError, match="PitchClassFeatures.*deeplift or integrated_gradients"):
        posthoc_maps(model, wave, "lrp", sample_rate=SR)


def test_shifted_correlation_matches_a_loop_over_shifts():
    from midlevel.music_features import shifted_correlation

    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 20, 9, generator=gen), torch.rand(3, 20, 9, generator=gen)
    expected = []
    for s in range(-5, 6):
        lo, hi = max(0, -s), 20 - max(0, s)
        expected.append((a[:, lo:hi] * b[:, lo + s:hi + s]).sum(1).mean(-1))
    torch.testing.assert_close(shifted_correlation(a, b, 5), torch.stack(expected, dim=1))


def test_melodic_intervals_see_steps_and_leaps():
    """A melody moving by whole tones shows mass at +2 semitones; one leaping by octaves at +-12."""
    from midlevel.music_features import MelodicIntervals

    def melody(step):
        m = torch.zeros(1, 84, 64)
        for t in range(64):
            m[0, 30 + (step * (t // 4)) % 24, t] = 1.0
        return m

    feats = MelodicIntervals(lags=(4,), max_interval=13)
    steps, leaps = feats(melody(2))[0, :27], feats(melody(12))[0, :27]
    assert int(steps.argmax()) - 13 == 2
    assert leaps[13 + 12] + leaps[13 - 12] > 0.9 and steps[13 + 12] == 0


def test_temporal_context_starts_as_identity_and_reaches_a_second_either_side():
    torch.manual_seed(0)
    ctx = TemporalContext(8, (1, 2, 4, 8, 16)).eval()
    h = torch.randn(2, 8, 100)
    torch.testing.assert_close(ctx(h), h)  # zero-initialised output: a warm start changes nothing
    torch.nn.init.normal_(ctx.out.weight)
    base = torch.zeros(1, 8, 100)
    poked = base.clone()
    poked[0, :, 50] = 1.0
    moved = (ctx(poked) - ctx(base)).abs().sum(1)[0]
    reach = 1 + 2 + 4 + 8 + 16
    assert moved[50 - reach] > 0 and moved[50 + reach] > 0
    assert moved[: 50 - reach].max() == 0 and moved[50 + reach + 1:].max() == 0


def test_note_key_measures_are_the_corpus_key_formulas_on_the_notes():
    """Peer check: on the note rolls of realised clips, ``NoteKeyMeasures`` tracks the corpus's own
    ``tonal_measures`` (which integrates exact note times rather than 32 ms frames)."""
    from test_controlled_corpus import SAMPLE_PIECES

    from midlevel.datasets.controlled import load_piece, realize
    from midlevel.datasets.controlled.build import sample_factors
    from midlevel.datasets.controlled.ratings import tonal_measures
    from midlevel.datasets.controlled.rolls import clip_roll, frame_times
    from midlevel.music_features import NoteKeyMeasures

    times = frame_times(314, 704, SR)
    rolls, recorded = [], []
    for i, piece_id in enumerate(SAMPLE_PIECES[:16]):
        piece = load_piece(piece_id)
        clip = realize(piece, sample_factors(np.random.default_rng([7, i, 1]), piece, 10.0), 10.0, key=(7, i))
        rolls.append(clip_roll(clip, times)[0])
        m = tonal_measures(clip)
        recorded.append([m["key_clarity"], m["local_key_clarity"], m["key_consistency"], m["minor_vs_major"]])
    ours = NoteKeyMeasures()(torch.tensor(np.stack(rolls), dtype=torch.float32)).numpy()
    recorded = np.array(recorded)
    for k in range(4):
        assert np.corrcoef(ours[:, k], recorded[:, k])[0, 1] > 0.85, k
    assert np.abs(ours - recorded).mean() < 0.05


def test_note_melody_measures_read_notes_not_frames():
    """Singability of the intervals between notes (a one-frame flicker dropped, a rest splitting a
    repeated note), range in octaves, and note starts per frame."""
    from midlevel.datasets.controlled.ratings import SINGABILITY
    from midlevel.music_features import NoteMelodyMeasures

    probs = torch.full((2, 84, 20), 0.1)
    for start, stop, pitch in [(0, 3, 36), (3, 6, 38), (6, 7, 50), (7, 10, 40), (12, 15, 40), (15, 17, 52)]:
        probs[0, pitch, start:stop] = 0.9
    probs[0, 30, 0:3] = 0.9  # a lower pitch under the first note: the highest is the melody
    module = NoteMelodyMeasures()
    np.testing.assert_array_equal(module.singability.numpy()[:13], SINGABILITY.astype(np.float32))
    out = module(probs).numpy()
    expected = np.mean([SINGABILITY[2], SINGABILITY[2], SINGABILITY[0], SINGABILITY[12]])  # 36-38-40-40-52
    np.testing.assert_allclose(out[0], [expected, (52 - 36) / 12, 5 / 20], rtol=1e-6)
    np.testing.assert_array_equal(out[1], 0.0)  # no melody


def test_note_measures_export_to_onnx(tmp_path):
    from midlevel.music_features import NoteKeyMeasures, NoteMelodyMeasures

    gen = torch.Generator().manual_seed(0)
    probs = torch.where(torch.rand(3, 84, 200, generator=gen) > 0.9, 0.9, 0.1)  # clear of the threshold
    probs[1] = 0.1  # no notes at all: every measure 0
    probs[2, :, :120] = 0.1  # notes only in the last windows
    for module in (NoteKeyMeasures().eval(), NoteMelodyMeasures().eval()):
        path = tmp_path / f"{type(module).__name__}.onnx"
        torch.onnx.export(module, (probs,), path, input_names=["probs"], output_names=["measures"], dynamo=True)
        out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"probs": probs.numpy()})[0]
        expected = module(probs).numpy()
        np.testing.assert_allclose(out, expected, atol=1e-5)
        np.testing.assert_array_equal(expected[1], 0.0)
        assert np.isfinite(expected).all() and (expected[[0, 2]] != 0).any(1).all()
