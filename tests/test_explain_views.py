"""The three views of an explanation (time, time-frequency, listening), post-hoc maps and the report.

Random seeded compact models with 3 s windows keep this fast; the mechanics under test
(additivity, completeness, reconstruction, axes, report content) do not depend on training.
"""

from __future__ import annotations

import argparse
import re

import numpy as np
import pytest
import soundfile as sf
import torch

from midlevel import ModelConfig, TwoStageModel, example_clip, load_audio
from midlevel.config import ConfigError
from midlevel.explain.attribution import (METHODS, SpectrogramNet, concept_maps, target_maps, track_maps,
                                         track_spectrogram)
from midlevel.explain.listen import (split_harmonic_percussive, split_time, split_time_frequency, time_mask,
                                     top_segments)
from midlevel.explain.posthoc import lrp, lrp_blockers, posthoc_maps, segment_mask
from midlevel.cli import add_report_arguments, report_options
from midlevel.explain.report import choose_excerpt, write_report
from midlevel.explain.timeline import timeline
from midlevel.explain.views_plotting import plot_map_grid
from midlevel.model import BlackBoxModel

from conftest import sine

SR = 22050


def make_model(head="linear", kind="two_stage", seed=0, window=3.0, **kw):
    torch.manual_seed(seed)
    cfg = ModelConfig(kind=kind, head=head, name=f"views-{kind}-{head}", window_seconds=window, hop_seconds=window / 2,
                      **kw)
    return (TwoStageModel if kind == "two_stage" else BlackBoxModel)(cfg).eval()


@pytest.fixture(scope="module")
def music():
    """7 s of the bundled piano clip."""
    return load_audio(example_clip(), SR).samples[: 7 * SR]


# -- over time ----------------------------------------------------------------------------------
@pytest.mark.parametrize("head", ["linear", "gam"])
def test_timeline_windows_are_additive_and_the_track_is_explain(head, music):
    model = make_model(head)
    tl = timeline(model, music, sample_rate=SR)
    assert tl.contributions.shape == (len(tl.starts), 8, 7)
    assert np.max(np.abs(tl.intercept + tl.contributions.sum(-1) - tl.outputs)) <= 1e-5
    with torch.no_grad():  # each window's outputs are the model's forward pass on that window
        for w, start in enumerate(tl.starts):
            a = int(round(start * SR))
            _, targets, terms = model(torch.from_numpy(music[None, a:a + 3 * SR]))
            np.testing.assert_allclose(tl.outputs[w], targets[0], atol=1e-5)
            np.testing.assert_allclose(tl.contributions[w], terms[0], atol=1e-5)
    expl = model.explain(music, sample_rate=SR)
    np.testing.assert_array_equal(tl.track.targets, expl.targets)
    np.testing.assert_array_equal(tl.track.contributions, expl.contributions)
    np.testing.assert_array_equal(tl.concepts, expl.window_concepts)
    if head == "linear":  # only a linear head commutes with the mean over windows
        np.testing.assert_allclose(tl.contributions.mean(0), expl.contributions, atol=1e-5)
    frame = tl.to_frame()
    np.testing.assert_allclose(frame[["intercept", *tl.concept_names]].sum(axis=1), frame["output"], atol=1e-5)


def test_timeline_with_a_small_hop_localises_and_keeps_the_track_result(music):
    model = make_model()
    tl = timeline(model, music, sample_rate=SR, window_seconds=1.0, hop_seconds=0.5)
    assert tl.window_seconds == 1.0 and len(tl.starts) == 13 and tl.ends[-1] == pytest.approx(7.0)
    with torch.no_grad():
        _, targets, _ = model(torch.from_numpy(music[None, 2 * SR:3 * SR]))
    np.testing.assert_allclose(tl.outputs[4], targets[0], atol=1e-5)  # the window starting at 2.0 s
    np.testing.assert_array_equal(tl.track.targets, model.explain(music, sample_rate=SR).targets)
    assert tl.series("dissonance").shape == (13,) and tl.concept_frame().shape == (13, 9)


def test_black_box_timeline_matches_its_predictions(music):
    model = make_model(kind="black_box")
    tl = timeline(model, music, sample_rate=SR)
    assert tl.concepts is None and tl.contributions is None
    np.testing.assert_allclose(tl.track_targets, model.predict_targets(music, sample_rate=SR), atol=1e-9)
    with torch.no_grad():
        np.testing.assert_allclose(tl.outputs[0], model(torch.from_numpy(music[None, :3 * SR]))[0], atol=1e-5)
    assert list(tl.to_frame().columns) == ["window", "start_s", "end_s", "target", "output"]


def test_timeline_plot_has_a_panel_per_target_and_concept_curves(music):
    tl = timeline(make_model(), music, sample_rate=SR)
    fig = tl.plot(targets=["tension", "valence"])
    assert len(fig.axes) == 3
    assert fig.axes[-1].get_xlim() == pytest.approx((0.0, 7.0))
    assert len(fig.axes[-1].get_lines()) == 7  # one curve per concept


# -- over the spectrogram -----------------------------------------------------------------------
@pytest.mark.parametrize("head, seconds", [("linear", 4.5), ("gam", 3.0)])
def test_integrated_gradients_maps_are_complete_for_concepts_and_targets(head, seconds, music):
    model = make_model(head)
    clip = music[: int(seconds * SR)]  # 4.5 s: two overlapping windows stitched together
    maps = concept_maps(model, clip, sample_rate=SR, n_steps=8)
    expl = model.explain(clip, sample_rate=SR)
    np.testing.assert_allclose(maps.outputs, expl.concepts, atol=1e-6)
    change = maps.outputs - maps.baseline_outputs
    np.testing.assert_allclose(maps.maps.sum(axis=(1, 2)), change, atol=2e-3 * np.abs(change).max())
    targets = target_maps(model, maps)
    np.testing.assert_allclose(targets.outputs, expl.targets, atol=1e-5)
    t_change = targets.outputs - targets.baseline_outputs
    np.testing.assert_allclose(targets.maps.sum(axis=(1, 2)), t_change, atol=3e-3 * np.abs(t_change).max())


def test_for_a_linear_head_the_weighted_concept_maps_are_the_target_attribution(music):
    model = make_model("linear")
    clip = music[: 3 * SR]
    combined = target_maps(model, concept_maps(model, clip, sample_rate=SR, method="gradient_x_input"))
    direct = track_maps(model, clip, METHODS["gradient_x_input"], outputs="targets", sample_rate=SR)
    np.testing.assert_allclose(combined.maps, direct.maps, atol=1e-4 * np.abs(direct.maps).max())


def test_maps_have_physical_time_and_frequency_axes(music):
    model = make_model()
    clip = music[: int(4.5 * SR)]
    maps = concept_maps(model, clip, sample_rate=SR, method="gradient_x_input")
    n_frames = len(clip) // 704 + 1
    assert maps.maps.shape == (7, 149, n_frames) and maps.spectrogram.shape == (149, n_frames)
    np.testing.assert_allclose(np.diff(maps.frame_times), 704 / SR)
    assert np.all(np.diff(maps.band_frequencies) > 0)
    assert 20 <= maps.band_frequencies[0] < 40 and 10_000 < maps.band_frequencies[-1] <= SR / 2
    with torch.no_grad():  # the display spectrogram is the front-end's on the whole track
        full = model.frontend.log_spectrogram(torch.from_numpy(clip[None]))[0].numpy()
    np.testing.assert_allclose(maps.spectrogram, full, atol=1e-4)
    np.testing.assert_allclose(track_spectrogram(model, clip, chunk_frames=50), full, atol=1e-4)
    assert maps.over_time("dissonance").shape == (n_frames,)
    fig = maps.plot("dissonance")
    spec_ax, map_ax, time_ax = fig.axes[:3]  # then the two colour bars
    for ax in (spec_ax, map_ax):
        assert ax.get_yscale() == "log"
        lo, hi = ax.get_ylim()
        assert 15 < lo < maps.band_frequencies[0] and maps.band_frequencies[-1] < hi < 12_000
    assert spec_ax.get_xlim() == pytest.approx((-352 / SR, maps.frame_times[-1] + 352 / SR))
    assert time_ax.get_xlabel() == "time (s)"
    assert len(plot_map_grid(maps).axes) == 8


def test_a_short_clip_is_padded_and_the_map_marks_its_end():
    model = make_model()
    maps = concept_maps(model, sine(440, 1.0), sample_rate=SR, method="gradient_x_input")
    assert maps.duration == pytest.approx(1.0) and maps.frame_times[-1] > 2.9  # the whole padded window


# -- post hoc ------------------------------------------------------------------------------------
ALL_POSTHOC = ("occlusion", "saliency", "grad_cam", "deeplift", "lrp", "lime")


# Concept outputs share every code path with targets but the top layers that the hooks of
# Grad-CAM, DeepLIFT and LRP walk through: those three are run on them too.
@pytest.mark.parametrize("kind, methods", [("black_box", ALL_POSTHOC), ("two_stage", ("grad_cam", "deeplift", "lrp"))],
                         ids=["black_box_targets", "two_stage_concepts"])
def test_posthoc_methods_give_finite_maps_of_the_right_shape(kind, methods, music):
    model = make_model(kind=kind, window=1.0)
    clip = music[:SR]  # one window
    options = {"occlusion": {"patch": (50, 16)}, "lime": {"n_samples": 12, "segments": (2, 3)}}
    shapes = {}
    for method in methods:
        maps = posthoc_maps(model, clip, method, sample_rate=SR, **options.get(method, {}))
        assert np.all(np.isfinite(maps.maps)), method
        shapes[method] = maps.maps.shape
        if method in ("saliency", "grad_cam"):
            assert maps.maps.min() >= 0, method
        if method == "deeplift":  # DeepLIFT's summation to delta
            change = maps.outputs - maps.baseline_outputs
            np.testing.assert_allclose(maps.maps.sum(axis=(1, 2)), change, atol=1e-4 * np.abs(change).max() + 1e-7)
        if method == "lime":  # one weight per time-frequency segment
            assert all(len(np.unique(m)) <= 6 for m in maps.maps) and np.abs(maps.maps).max() > 0
    d = 8 if kind == "black_box" else 7
    assert set(shapes.values()) == {(d, 149, SR // 704 + 1)}


def test_occlusion_of_the_whole_window_is_the_output_change(music):
    model = make_model(kind="black_box")
    maps = posthoc_maps(model, music[: 3 * SR], "occlusion", sample_rate=SR, patch=(149, 94))
    change = maps.outputs - maps.baseline_outputs
    np.testing.assert_allclose(maps.maps, np.broadcast_to(change[:, None, None], maps.maps.shape), atol=1e-5)


def test_lrp_names_what_blocks_it():
    two_stage = make_model()
    assert lrp_blockers(SpectrogramNet(two_stage, "concepts")) == []
    assert lrp_blockers(SpectrogramNet(make_model(kind="black_box"), "targets")) == []
    net = SpectrogramNet(two_stage, "targets")
    assert lrp_blockers(net) == ["SparseLinearHead"]
    spec = torch.zeros(1, 1, 149, 20)
    with pytest.raises(ValueError, match="no rule for SparseLinearHead"):
        lrp(net, spec, spec, 0)


def test_lime_segments_tile_the_spectrogram():
    mask = segment_mask(149, 94, 6, 10)[0, 0].numpy()
    assert sorted(np.unique(mask)) == list(range(60))
    assert np.all(np.diff(mask[:, 0]) >= 0) and np.all(np.diff(mask[0]) >= 0)


# -- to listen to --------------------------------------------------------------------------------
def test_time_split_reconstructs_exactly_and_writes_wavs(music, tmp_path):
    split = split_time(music, SR, [(1.0, 2.5), (5.0, 7.0)])
    assert np.max(np.abs(split.part + split.rest - music)) <= 1e-6
    assert np.all(split.part[: SR - 1] == 0) and np.all(split.rest[int(1.1 * SR):int(2.4 * SR)] == 0)
    part_path, rest_path = split.write(tmp_path, "tension")
    part, sr = sf.read(part_path, dtype="float32")
    rest, _ = sf.read(rest_path, dtype="float32")
    assert sr == SR and np.max(np.abs(part + rest - music)) <= 1e-4


def test_time_mask_fades_inside_the_segment_and_spans_do_not_overlap():
    mask = time_mask(SR, SR, [(0.25, 0.75)], fade=0.01)
    assert mask[int(0.25 * SR)] < 0.01 and mask[int(0.26 * SR) + 1] == pytest.approx(1.0, abs=1e-6)
    assert np.all(mask[: round(0.25 * SR)] == 0) and np.all(mask[round(0.75 * SR):] == 0)
    scores = np.array([0, 5, 9, 1, 0, 8])
    assert top_segments(np.arange(6.0), 2.0, scores, n=2) == [(2.0, 4.0), (5.0, 7.0)]
    assert top_segments(np.arange(6.0), 2.0, scores, n=3) == [(0.0, 2.0), (2.0, 4.0), (5.0, 7.0)]


def test_time_frequency_split_reconstructs_and_follows_the_map_axes():
    model = make_model()
    low, high = sine(440, 4.0), sine(3000, 4.0)
    wave = low + high
    n_frames = len(wave) // 704 + 1
    band_map = np.zeros((149, n_frames))
    freqs = model.frontend.filterbank.argmax(dim=0).numpy() * SR / 2048
    times = np.arange(n_frames) * 704 / SR
    band_map[np.ix_(np.abs(freqs - 3000) < 200, (times > 1.0) & (times < 3.0))] = 1.0
    split = split_time_frequency(wave, SR, band_map, model.frontend.filterbank.numpy(), n_fft=2048, hop=704,
                                 fraction=0.5)
    assert np.max(np.abs(split.part + split.rest - wave)) <= 1e-4
    middle = slice(int(1.3 * SR), int(2.7 * SR))
    outside = np.r_[0:int(0.7 * SR), int(3.3 * SR):len(wave)]
    assert np.corrcoef(split.part[middle], high[middle])[0, 1] > 0.99  # the 3 kHz tone, in its time span
    assert np.sqrt(np.mean(split.part[outside] ** 2)) < 1e-3


def test_harmonic_percussive_split_reconstructs(music):
    split = split_harmonic_percussive(music, SR, n_fft=2048, hop=704)
    assert np.max(np.abs(split.part + split.rest - music)) <= 1e-4
    assert np.std(split.part) > np.std(split.rest)  # piano: mostly harmonic


# -- the report ----------------------------------------------------------------------------------
CARD = """---
license: mit
datasets:
- a synthetic corpus
model-index:
- name: views-two_stage-linear
  results:
  - metrics:
    - {type: pearsonr, name: mean target r, value: 0.5}
---
# views-two_stage-linear

A test card's summary <b>escaped</b>.

## Limitations

- Trained on synthetic audio only.
- Not for clinical use.

## Training
Details.
"""


@pytest.fixture(scope="module")
def report_html(tmp_path_factory, music):
    out = tmp_path_factory.mktemp("report")
    card = out / "card.md"
    card.write_text(CARD)
    path = write_report(make_model(), music[:4 * SR], out / "report.html", sample_rate=SR, method="gradient_x_input",
                        target="tension", posthoc=["grad_cam"], segment_seconds=1.0, card=card, listen="dissonance",
                        format="png")
    return path.read_text()


def test_report_is_self_contained_with_all_views(report_html):
    assert not re.search(r"""(src|href)=["'](?!data:)""", report_html)  # nothing outside the file
    assert report_html.count('src="data:image/png;base64,') == 5
    assert report_html.count('<source src="data:audio/wav;base64,') == 7
    for heading in ("Model card", "Track", "Over time", "Over the spectrogram", "To listen to"):
        assert f"<h2>{heading}</h2>" in report_html
    assert "explained target: <b>tension</b>" in report_html and "post hoc: grad cam" in report_html
    assert "segment(s) where dissonance is highest" in report_html


def test_report_shows_the_model_card_summary_and_limitations(report_html):
    assert "A test card&#x27;s summary &lt;b&gt;escaped&lt;/b&gt;." in report_html
    assert "<li>Trained on synthetic audio only.</li><li>Not for clinical use.</li>" in report_html
    assert "Details." not in report_html and "mean target r" in report_html


def test_report_without_a_card_says_so_and_explains_black_boxes(tmp_path):
    wave = sine(440, 2.0)
    path = write_report(make_model(kind="black_box"), wave, tmp_path / "r.html", sample_rate=SR,
                        method="saliency", target="tension", segment_seconds=1.0, wav_dir=tmp_path / "wav",
                        format="png")
    text = path.read_text()
    wavs = sorted(p.name for p in (tmp_path / "wav").iterdir())
    assert wavs == sorted(f"array_tension_{kind}_{end}.wav" for kind in ("harmonic-percussive", "time",
                                                                          "time-frequency") for end in ("part", "rest"))
    for kind in ("harmonic-percussive", "time", "time-frequency"):
        part, rest = (sf.read(tmp_path / "wav" / f"array_tension_{kind}_{end}.wav", dtype="float32")[0]
                      for end in ("part", "rest"))
        assert np.max(np.abs(part + rest - wave)) <= 1e-4
    assert "No model card exists for views-black_box-linear." in text
    assert text.count("<audio") == 7 and text.count("data:image/png") == 2  # timeline, target map


def test_long_tracks_get_a_bounded_excerpt():
    model = make_model(kind="black_box")
    clip = model.read_audio(np.tile(sine(440, 1.0), 40), sample_rate=SR)
    tl = timeline(model, clip)
    excerpt = choose_excerpt(clip, tl, "tension", 12.0)
    assert excerpt.audio.duration == pytest.approx(12.0) and not excerpt.whole_track
    assert 0 <= excerpt.start <= 28.0
    assert choose_excerpt(clip, tl, "tension", 60.0).whole_track


def test_report_arguments_become_write_report_options():
    parser = argparse.ArgumentParser()
    add_report_arguments(parser)
    args = parser.parse_args(["--report", "r.html", "--target", "tension", "--posthoc", "lrp", "--posthoc", "lime",
                              "--timeline-hop", "0.5"])
    assert args.report == "r.html"
    assert report_options(args) == {"target": "tension", "format": "html", "method": None, "posthoc": ["lrp", "lime"],
                                    "listen": None, "window_seconds": None, "hop_seconds": 0.5, "max_seconds": 30.0,
                                    "wav_dir": None}
    with pytest.raises(SystemExit):
        parser.parse_args(["--posthoc", "shap"])


def test_report_refuses_unknown_names_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="unknown target 'joy'"):
        write_report(make_model(), sine(440, 1.0), tmp_path / "r.html", sample_rate=SR, target="joy")
    with pytest.raises(ConfigError, match="listen: 'energy' is neither"):
        write_report(make_model(), sine(440, 1.0), tmp_path / "r.html", sample_rate=SR, target="tension",
                     listen="energy", format="png")
    assert not (tmp_path / "r.html").exists()
