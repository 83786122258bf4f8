import numpy as np
import pytest
import torch
from PIL import Image

from midlevel import ModelConfig, TwoStageModel, example_clip
from midlevel.checkpoint import ModelLoadError
from midlevel.model import slice_windows, window_starts, window_starts_tensor

from conftest import sine


def make_model(head="linear", backbone="compact", seed=0, **kw):
    torch.manual_seed(seed)
    return TwoStageModel(ModelConfig(head=head, backbone=backbone, name=f"test-{head}", **kw)).eval()


def test_window_starts_cover_the_track_and_end_align():
    assert window_starts(100, 200, 50) == [0]
    assert window_starts(200, 200, 100) == [0]
    assert window_starts(350, 200, 100) == [0, 100, 150]
    assert window_starts(400, 200, 100) == [0, 100, 200]


@pytest.mark.parametrize("window, hop", [(8, 4), (12, 4), (6, 6), (9, 4), (11, 4), (3, 5)])
def test_windows_by_slices_equal_windows_by_index_for_every_length(window, hop):
    """The exported graph cuts windows from hop-long rows of one reshape (no per-sample Gather); every track
    length, shorter than a window, a whole number of hops or not, gives the same windows as indexing the
    zero-padded track at the starts the chunked path uses does."""
    for n in range(1, 5 * window):
        wave = torch.randn(2, n)
        padded = torch.nn.functional.pad(wave, (0, window))
        expected = torch.stack([padded[:, s:s + window] for s in window_starts_tensor(n, window, hop).tolist()], dim=1)
        assert torch.equal(slice_windows(wave, window, hop), expected), n


@pytest.mark.parametrize("backbone", ["compact", "vgg"])
def test_forward_shapes(backbone):
    model = make_model(backbone=backbone)
    with torch.no_grad():
        concepts, targets, contributions = model(torch.randn(2, 22050 * 3) * 0.1)
    assert concepts.shape == (2, 7) and targets.shape == (2, 8) and contributions.shape == (2, 8, 7)


@pytest.mark.parametrize("head", ["linear", "gam"])
def test_explain_is_exactly_additive_on_real_audio(head):
    expl = make_model(head).explain(example_clip())
    assert expl.contributions.shape == (8, 7)
    recon = expl.contributions.sum(axis=1) + expl.intercept
    assert np.max(np.abs(recon - expl.targets)) <= 1e-5
    frame = expl.to_frame()
    np.testing.assert_allclose(frame.drop(columns=["prediction"]).sum(axis=1), frame["prediction"], atol=1e-5)
    assert not expl.padded and not expl.silent


def test_long_track_concepts_are_the_mean_of_its_windows(rng):
    model = make_model("gam", window_seconds=2.0, hop_seconds=1.0)
    wave = (rng.standard_normal(22050 * 5 + 1000) * 0.1).astype(np.float32)
    expl = model.explain(wave, sample_rate=22050)
    assert len(expl.window_starts) == 5  # 0,1,2,3 s and an end-aligned last window
    with torch.no_grad():
        first = model.concepts_from_waveform(torch.from_numpy(wave[None, :44100]))[0].numpy()
        head_out = model.head(torch.tensor(expl.concepts[None], dtype=torch.float32))[0].numpy()
    np.testing.assert_allclose(expl.window_concepts[0], first, atol=1e-5)
    np.testing.assert_allclose(expl.concepts, expl.window_concepts.mean(0), atol=1e-9)
    np.testing.assert_allclose(expl.targets, head_out, atol=1e-4)


def test_inference_flushes_denormals_and_restores_the_callers_setting(rng):
    """Denormal activations make x86 arithmetic several times slower; inference flushes them to zero
    (the flag is per thread and has no getter, so a tiny product seen from inside the backbone tells)."""
    tiny = torch.tensor([1e-40], dtype=torch.float32)  # below float32's smallest normal number
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormals")
    model = make_model()
    seen = []
    model.backbone.register_forward_hook(lambda *_: seen.append((tiny * 1.0).item() == 0.0))
    wave = (rng.standard_normal(22050 * 3) * 0.1).astype(np.float32)
    flushed = model.explain(wave, sample_rate=22050)
    assert seen and all(seen)
    assert (tiny * 1.0).item() != 0.0  # the caller's setting is back
    torch.set_flush_denormal(True)
    try:
        again = model.explain(wave, sample_rate=22050)
        assert (tiny * 1.0).item() == 0.0
    finally:
        torch.set_flush_denormal(False)
    np.testing.assert_array_equal(flushed.concepts, again.concepts)


def test_short_clips_are_padded_and_silence_is_flagged_not_a_crash():
    model = make_model()
    short = model.explain(sine(440, 0.1), sample_rate=22050)
    assert short.padded and not short.silent
    silent = model.explain(np.zeros(22050 * 2, dtype=np.float32), sample_rate=22050)
    assert silent.silent and np.all(np.isfinite(silent.targets))
    # an untrained head may also put targets outside their scale (tests/test_input_flags.py)
    assert silent.flags()[:2] == ["padded", "silent"] and set(silent.flags()[2:]) <= {"targets_out_of_scale"}


def test_top_and_plot(tmp_path):
    expl = make_model().explain(example_clip())
    top = expl.top(2)
    assert len(top) == 16
    valence = top[top.target == "valence"].contribution.abs().to_numpy()
    assert valence[0] >= valence[1] == np.sort(np.abs(expl.contributions[0]))[-2]
    fig = expl.plot(tmp_path / "expl.png")
    image = Image.open(tmp_path / "expl.png")
    assert image.format == "PNG" and image.size[0] > 300
    assert len(fig.axes) == 8
    with pytest.raises(KeyError, match="unknown target"):
        expl.top(1, target="joy")


@pytest.mark.parametrize("head", ["linear", "gam"])
def test_save_load_round_trip_is_identical(tmp_path, head, rng):
    model = make_model(head, backbone="compact")
    model.frontend.set_normalization(torch.full((149,), 0.3), torch.full((149,), 2.0))
    model.save_pretrained(tmp_path / "m")
    loaded = TwoStageModel.from_pretrained(tmp_path / "m")
    assert loaded.config.to_dict() == model.config.to_dict()
    wave = torch.from_numpy((rng.standard_normal((2, 22050 * 2)) * 0.1).astype(np.float32))
    with torch.no_grad():
        for a, b in zip(model(wave), loaded(wave)):
            assert torch.equal(a, b)


def test_changed_or_truncated_weights_are_refused(tmp_path):
    make_model().save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="sha256 mismatch"):
        TwoStageModel.from_pretrained(tmp_path / "m")
    weights.write_bytes(bytes(data[: len(data) // 3]))
    with pytest.raises(ModelLoadError, match="model.safetensors"):
        TwoStageModel.from_pretrained(tmp_path / "m")


def test_overwriting_a_model_folder_keeps_it_loadable(tmp_path):
    make_model(seed=1).save_pretrained(tmp_path / "m")
    second = make_model(seed=2)
    second.save_pretrained(tmp_path / "m")
    loaded = TwoStageModel.from_pretrained(tmp_path / "m")
    assert torch.equal(loaded.concept_layer.weight, second.concept_layer.weight)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]


def test_bad_model_folders_get_clear_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="config.json: no such file"):
        TwoStageModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        TwoStageModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"model": {"backbone": "compact", "colour": 3}}')
    with pytest.raises(ModelLoadError, match="colour"):
        TwoStageModel.from_pretrained(tmp_path)


def test_black_box_baseline_round_trips_and_is_not_taken_for_a_two_stage_model(tmp_path, rng):
    from midlevel import load
    from midlevel.model import BlackBoxModel

    torch.manual_seed(0)
    box = BlackBoxModel(ModelConfig(kind="black_box", name="a2e")).eval()
    box.save_pretrained(tmp_path / "a2e")
    loaded = load(tmp_path / "a2e")
    assert isinstance(loaded, BlackBoxModel)
    wave = (rng.standard_normal(22050 * 12) * 0.1).astype(np.float32)
    np.testing.assert_allclose(loaded.predict_targets(wave, sample_rate=22050),
                               box.predict_targets(wave, sample_rate=22050), atol=1e-6)
    with pytest.raises(ModelLoadError, match="black_box model, not a TwoStageModel"):
        TwoStageModel.from_pretrained(tmp_path / "a2e")
