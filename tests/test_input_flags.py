"""Issue 29: inputs outside what a model knows are flagged, never silent.

Real models (small, randomly initialised, some with weights set by hand the way training could set them),
real files written with soundfile and cut with bytes, peers (soundfile, scipy, scikit-learn) for the numbers.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from midlevel import ModelConfig, TwoStageModel
from midlevel.audio import AudioError, load_audio
from midlevel.checkpoint import ModelLoadError, save_model_dir
from midlevel.cli import main as cli_main
from midlevel.model import BlackBoxModel, window_starts
from midlevel.ood import OOD_FILE, calibrate, mean_embeddings

from script_loader import load_script

SR = 22050
WINDOW_S, HOP_S = 2.0, 1.0


def small_model(head="linear", seed=0, **kw):
    torch.manual_seed(seed)
    return TwoStageModel(ModelConfig(head=head, backbone="compact", window_seconds=WINDOW_S, hop_seconds=HOP_S,
                                     name=f"small-{head}", **kw)).eval()


def tune(seed: int, seconds: float = WINDOW_S, level: float = 0.2) -> np.ndarray:
    """A plucked melody: eight notes a second, four harmonics each, drawn from a chromatic octave."""
    rng = np.random.default_rng(seed)
    n, step = int(seconds * SR), int(0.125 * SR)
    t = np.arange(step) / SR
    out = np.zeros(n)
    for i in range(0, n, step):
        f = 220 * 2 ** (rng.integers(0, 12) / 12)
        note = sum(0.5 ** k * np.sin(2 * np.pi * f * (k + 1) * t) for k in range(4)) * np.exp(-6 * t)
        out[i:i + step] += note[:n - i]
    return (level * out / np.abs(out).max()).astype(np.float32)


def square(seconds: float = WINDOW_S, level: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (level * np.sign(np.sin(2 * np.pi * 220 * t))).astype(np.float32)


def raw_window_concepts(model: TwoStageModel, wave: np.ndarray) -> np.ndarray:
    """Each window's concepts before any clipping: the windows cut by hand at ``window_starts``, and the
    network on each."""
    cfg = model.config
    starts = window_starts(len(wave), cfg.window_samples, cfg.hop_samples)
    windows = np.stack([np.pad(wave[s:s + cfg.window_samples], (0, max(0, s + cfg.window_samples - len(wave))))
                        for s in starts])
    with torch.no_grad():
        return model.concepts_from_waveform(torch.from_numpy(windows)).double().numpy()


# --- 1. concepts and targets outside their scales ------------------------------------------------------------


@pytest.mark.parametrize("head", ["linear", "gam"])
def test_concepts_are_clipped_before_the_head_and_the_terms_stay_exact(head, rng):
    model = small_model(head)
    names = list(model.config.concept_names)
    with torch.no_grad():  # a concept layer that overshoots, as the square wave of issue 29 made one do
        model.concept_layer.bias[names.index("dissonance")] = 28.9
        model.concept_layer.bias[names.index("minorness")] = -3.0
        model.concept_layer.bias[names.index("articulation")] = 10.0  # at the edge: some windows beyond it
        model.concept_layer.weight.mul_(30.0)
    wave = tune(1, seconds=4.5)
    raw = raw_window_concepts(model, wave)
    low, high = model.config.concept_scale
    outside = (raw < low) | (raw > high)
    assert outside.any() and not outside.all(), raw  # some concepts overshoot, some do not

    expl = model.explain(wave, sample_rate=SR)
    np.testing.assert_allclose(expl.window_concepts, np.clip(raw, low, high), atol=1e-4)
    np.testing.assert_allclose(expl.concepts, np.clip(raw, low, high).mean(axis=0), atol=1e-4)
    np.testing.assert_allclose(expl.raw_concepts, raw.mean(axis=0), atol=1e-4)
    assert expl.concepts.min() >= low and expl.concepts.max() <= high
    assert np.abs(expl.contributions.sum(axis=1) + expl.intercept - expl.targets).max() <= 1e-5
    with torch.no_grad():  # the head itself on the clipped concepts
        head_out = model.head(torch.tensor(expl.concepts[None], dtype=torch.float32))[0].double().numpy()
    np.testing.assert_allclose(expl.targets, head_out, atol=1e-4)

    assert "concepts_out_of_scale" in expl.flags()
    note = next(n for n in expl.notes if n.startswith("concepts outside"))
    for k, name in enumerate(model.config.concept_names):
        assert (f"{name} " in note) == bool(outside[:, k].any()), (name, note)
    farthest = raw[np.abs(raw - (low + high) / 2).argmax(axis=0), np.arange(raw.shape[1])]
    for k in np.flatnonzero(outside.any(axis=0)):
        assert f"{model.config.concept_names[k]} {farthest[k]:.3g}" in note
    data = expl.to_dict()
    assert "concepts_out_of_scale" in data["flags"] and json.dumps(data)
    assert data["raw_concepts"] == pytest.approx(dict(zip(model.config.concept_names, raw.mean(axis=0))), abs=1e-4)


def test_finer_timeline_windows_are_clipped_too():
    from midlevel.explain.timeline import timeline

    model = small_model()
    with torch.no_grad():
        model.concept_layer.bias[:3] = torch.tensor([12.0, 10.0, -1.0])
        model.concept_layer.weight.mul_(30.0)
    wave = tune(2, seconds=4.0)
    tl = timeline(model, wave, window_seconds=1.0, hop_seconds=0.5, sample_rate=SR)
    low, high = model.config.concept_scale
    unclipped = model.window_outputs(torch.from_numpy(wave[None]), chunk=4, window=SR, hop=SR // 2)[0].detach()
    assert ((unclipped < low) | (unclipped > high)).any()
    np.testing.assert_allclose(tl.concepts, unclipped.clamp(low, high).double().numpy(), atol=1e-5)


def test_targets_outside_their_scale_are_flagged_not_clipped():
    model = small_model()
    wave = tune(3)
    low, high = model.config.target_scale
    with torch.no_grad():  # a head that stays inside the scale
        model.head.weight.mul_(0.01)
        model.head.bias.fill_(5.0)
    inside = model.explain(wave, sample_rate=SR)
    assert inside.targets.min() >= low and inside.targets.max() <= high
    assert "targets_out_of_scale" not in inside.flags() and inside.flags() == []
    with torch.no_grad():  # and one whose intercept lies beyond it
        model.head.bias.fill_(50.0)
    beyond = model.explain(wave, sample_rate=SR)
    assert beyond.targets.min() > high  # kept as computed
    assert np.abs(beyond.contributions.sum(axis=1) + beyond.intercept - beyond.targets).max() <= 1e-5
    assert beyond.flags() == ["targets_out_of_scale"]
    note = next(n for n in beyond.notes if n.startswith("targets outside"))
    assert all(f"{name} {value:.3g}" in note for name, value in zip(beyond.target_names, beyond.targets))
    assert model.predict(wave, sample_rate=SR).flags() == ["targets_out_of_scale"]


def test_black_box_targets_are_checked_and_not_clipped():
    torch.manual_seed(0)
    box = BlackBoxModel(ModelConfig(kind="black_box", backbone="compact", window_seconds=WINDOW_S,
                                    hop_seconds=HOP_S)).eval()
    with torch.no_grad():
        box.target_layer.bias.fill_(-20.0)
    pred = box.predict(tune(4), sample_rate=SR)
    with torch.no_grad():
        direct = box(torch.from_numpy(tune(4)[None]))[0].double().numpy()
    np.testing.assert_allclose(pred.targets, direct, atol=1e-4)
    assert pred.targets.max() < 1 and "targets_out_of_scale" in pred.flags() and pred.raw_concepts is None


# --- 2. input level ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("peak, bits, scaled_as", [(20000, 16, np.int16), (3_000_000, 24, np.int32),
                                                     (1_500_000_000, 32, np.int32)])
def test_float_arrays_in_integer_ranges_are_rescaled_with_a_note(peak, bits, scaled_as):
    ints = np.round(np.sin(np.linspace(0, 40, 5000)) * peak).astype(np.int64)
    ints[123] = peak
    as_float = ints.astype(np.float64)  # integer samples cast to float without scaling
    audio = load_audio(as_float, source_sample_rate=SR)
    # peer: the same integers as an integer array, which load_audio scales by its dtype
    shift = 32 - bits if scaled_as is np.int32 else 0
    expected = load_audio((ints << shift).astype(scaled_as), source_sample_rate=SR).samples
    np.testing.assert_allclose(audio.samples, expected, atol=1e-7)
    name = {16: "int16", 24: "int24", 32: "int32"}[bits]
    assert audio.notes == (f"rescaled from {name} range: peak {peak:g} -> {peak / 2.0 ** (bits - 1):.2g}",)
    assert audio.flags == ()
    if bits == 16:
        assert audio.notes == ("rescaled from int16 range: peak 20000 -> 0.61",)


def test_levels_over_full_scale_are_kept_and_flagged(tmp_path):
    loud = tune(5, level=1.5)
    audio = load_audio(loud, source_sample_rate=SR)
    np.testing.assert_array_equal(audio.samples, loud)  # neither clipped nor scaled
    assert audio.flags == ("over_full_scale",) and "+3.5 dBFS" in audio.notes[0]
    path = tmp_path / "loud.wav"
    sf.write(path, loud, SR, subtype="FLOAT")
    from_file = load_audio(path)
    assert from_file.flags == ("over_full_scale",)
    np.testing.assert_allclose(from_file.samples, sf.read(path, dtype="float32")[0])
    for fine in (tune(5, level=1.0), tune(5, level=1.0005)):  # full scale, and float rounding of it
        assert load_audio(fine, source_sample_rate=SR).flags == ()
    with pytest.raises(AudioError, match=r"^mic: peak .* beyond any integer sample range"):
        load_audio(np.array([0.0, 2.0**31 + 5e3]), source_sample_rate=SR, name="mic")


def test_input_notes_and_flags_reach_the_prediction_through_resampling():
    model = small_model()
    with torch.no_grad():
        model.head.weight.mul_(0.01)
        model.head.bias.fill_(5.0)
    loud = load_audio(tune(6, level=1.5), source_sample_rate=SR)
    at_44k = load_audio(loud.samples, 44100, source_sample_rate=SR)  # an Audio at another rate
    pred = model.predict(at_44k)
    assert pred.flags() == ["over_full_scale"] and pred.notes == list(loud.notes)
    scaled = model.predict(tune(6) * 30000.0, sample_rate=SR)
    assert scaled.flags() == [] and scaled.notes[0].startswith("rescaled from int16 range")
    np.testing.assert_allclose(scaled.concepts, model.predict(tune(6) * (30000.0 / 2**15), sample_rate=SR).concepts,
                               atol=1e-5)


# --- 3. truncated files --------------------------------------------------------------------------------------


def cut(path, fraction):
    data = path.read_bytes()
    out = path.with_name(f"cut-{path.name}")
    out.write_bytes(data[:int(len(data) * fraction)])
    return out


@pytest.mark.parametrize("ext, subtype", [("wav", "PCM_16"), ("wav", "FLOAT"), ("wav", "PCM_24"), ("mp3", None)])
def test_truncated_files_are_flagged_with_what_was_decoded(tmp_path, ext, subtype):
    whole = tmp_path / f"tone.{ext}"
    sf.write(whole, np.stack([tune(7, 10.0)] * 2, axis=1), SR, **({"subtype": subtype} if subtype else {}))
    intact = load_audio(whole)
    assert intact.flags == () and intact.notes == ()
    part = cut(whole, 0.31)
    audio = load_audio(part)
    stated = sf.info(whole).frames  # the intact file's length, which the cut file's header still states
    decoded = len(sf.read(part)[0])  # what libsndfile decodes of the cut file
    assert decoded < 0.4 * stated
    assert audio.flags == ("truncated",)
    assert audio.notes == (f"decoded {decoded / SR:.1f} s of a stated {stated / SR:.1f} s",)
    assert audio.duration == pytest.approx(decoded / SR)


def test_a_truncated_file_is_flagged_in_the_cli_output(tmp_path, capsys):
    model = small_model()
    model.save_pretrained(tmp_path / "m")
    whole = tmp_path / "song.wav"
    sf.write(whole, tune(8, 10.0), SR)
    part = cut(whole, 0.5)
    assert cli_main(["predict", str(part), "--model", str(tmp_path / "m")]) == 0
    text = capsys.readouterr().out
    assert "flags: truncated" in text and "note: decoded 5.0 s of a stated 10.0 s" in text
    assert "out-of-distribution score" not in text  # the folder has no calibration
    assert cli_main(["predict", str(part), "--model", str(tmp_path / "m"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "truncated" in data["flags"] and data["ood_score"] is None


# --- 4. out-of-distribution score ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def calibrated():
    """A small model calibrated on 24 tunes (threshold from 12 others); the model, its calibration and the
    calibration clips' embeddings."""
    model = small_model()
    clips = [tune(s) for s in range(24)]
    ood = calibrate(model, clips, threshold_clips=[tune(s) for s in range(100, 112)], sample_rate=SR,
                    corpus="tunes")
    model.ood = ood
    return model, ood, clips


def test_far_inputs_score_higher_than_held_back_clips_like_the_calibration_ones(calibrated):
    model, ood, _ = calibrated
    held = [model.predict(tune(s), sample_rate=SR) for s in range(200, 208)]
    noise = model.predict((0.2 * np.random.default_rng(0).standard_normal(int(WINDOW_S * SR))).astype(np.float32),
                          sample_rate=SR)
    buzz = model.predict(square(level=0.5), sample_rate=SR)
    held_scores = [p.ood_score for p in held]
    assert max(held_scores) < 1.5 and np.median(held_scores) < 1.0, held_scores
    for far in (noise, buzz):
        assert far.ood_score > 3 * max(held_scores), (far.ood_score, held_scores)
        assert "out_of_distribution" in far.flags()
        assert any(n.startswith("out of distribution") and "tunes" in n for n in far.notes)
    assert sum("out_of_distribution" in p.flags() for p in held) <= 1
    assert ood.metadata["n_calibration"] == 24 and ood.metadata["n_threshold"] == 12


def test_distance_matches_scipy_and_sklearn_on_independent_embeddings(calibrated):
    from scipy.spatial.distance import mahalanobis
    from sklearn.covariance import LedoitWolf

    model, ood, clips = calibrated
    with torch.no_grad():  # one window each: the embedding is the backbone on the front-end, nothing else
        embeddings = model.backbone(model.frontend(torch.from_numpy(np.stack(clips)))).double().numpy()
    np.testing.assert_allclose(mean_embeddings(model, clips, sample_rate=SR), embeddings, atol=1e-5)
    lw = LedoitWolf().fit(embeddings)
    probe_wave = square(level=0.5)
    with torch.no_grad():
        probe = model.backbone(model.frontend(torch.from_numpy(probe_wave[None])))[0].double().numpy()
    for x in (probe, embeddings[3]):
        peer = mahalanobis(x, lw.location_, lw.precision_)
        assert float(ood.distance(x)) == pytest.approx(peer, rel=1e-6)
        assert float(ood.distance(x)) == pytest.approx(np.sqrt(lw.mahalanobis(x[None])[0]), rel=1e-6)
    score = model.predict(probe_wave, sample_rate=SR).ood_score
    assert score == pytest.approx(mahalanobis(probe, lw.location_, lw.precision_) / ood.threshold, rel=1e-4)


def test_calibration_round_trips_and_is_refused_for_other_weights(calibrated, tmp_path):
    model, ood, _ = calibrated
    wave = square(level=0.5)
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / OOD_FILE).is_file()
    loaded = TwoStageModel.from_pretrained(tmp_path / "m")
    assert loaded.predict(wave, sample_rate=SR).ood_score == pytest.approx(model.predict(wave, sample_rate=SR).ood_score)
    assert loaded.ood.metadata["corpus"] == "tunes" and loaded.ood.threshold == ood.threshold

    bare = small_model(seed=1)
    assert bare.predict(wave, sample_rate=SR).ood_score is None
    save_model_dir(tmp_path / "m", bare.config, bare.state_dict())  # new weights, the old calibration left there
    with pytest.raises(ModelLoadError, match="ood.safetensors: calibrated for weights .* recalibrate"):
        TwoStageModel.from_pretrained(tmp_path / "m")
    assert TwoStageModel.from_pretrained(tmp_path / "m", with_ood=False).ood is None
    bare.save_pretrained(tmp_path / "m")  # save_pretrained removes a calibration of other weights
    assert not (tmp_path / "m" / OOD_FILE).exists()
    pred = TwoStageModel.from_pretrained(tmp_path / "m").predict(wave, sample_rate=SR)
    assert pred.ood_score is None and "out_of_distribution" not in pred.flags()


def test_inference_with_a_calibration_needs_no_sklearn(calibrated, tmp_path):
    model, _, _ = calibrated
    model.save_pretrained(tmp_path / "m")
    np.save(tmp_path / "wave.npy", square(level=0.5))
    code = ("import sys, json, numpy as np; sys.modules['sklearn'] = None; sys.modules['scipy'] = None\n"
            "from midlevel.model import AudioModel\n"
            f"m = AudioModel.from_pretrained({str(tmp_path / 'm')!r})\n"
            f"p = m.predict(np.load({str(tmp_path / 'wave.npy')!r}), sample_rate={SR})\n"
            "print(json.dumps([p.ood_score, p.flags()]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    score, flags = json.loads(done.stdout.splitlines()[-1])
    assert score == pytest.approx(model.predict(square(level=0.5), sample_rate=SR).ood_score, rel=1e-6)
    assert "out_of_distribution" in flags


def test_calibration_script_writes_the_file_from_a_corpus_with_splits(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    (corpus / "audio").mkdir(parents=True)
    (corpus / "metadata_annotations").mkdir()
    splits = ["train"] * 14 + ["val"] * 6
    for i in range(1, len(splits) + 1):
        sf.write(corpus / "audio" / f"{i}.flac", tune(300 + i), SR)
    (corpus / "metadata_annotations" / "annotations.csv").write_text(
        "song_id,melodiousness\n" + "".join(f"{i},5.0\n" for i in range(1, len(splits) + 1)))
    (corpus / "metadata_annotations" / "metadata.csv").write_text(
        "song id;split\n" + "".join(f"{i};{s}\n" for i, s in enumerate(splits, 1)))
    small_model().save_pretrained(tmp_path / "m")
    script = load_script("scripts/calibrate_ood.py")
    assert script.main(["--model", str(tmp_path / "m"), "--corpus", str(corpus), "--n", "10"]) == 0
    assert "10 clips fitted (train split, threshold on the val split)" in capsys.readouterr().out
    loaded = TwoStageModel.from_pretrained(tmp_path / "m")
    meta = loaded.ood.metadata
    assert (meta["n_calibration"], meta["n_threshold"], meta["corpus"]) == (10, 6, "corpus")
    assert not [p for p in (tmp_path / "m").iterdir() if p.name.startswith(".")]  # no temporary file left
    assert loaded.predict(square(level=0.5), sample_rate=SR).ood_score > 1.0
