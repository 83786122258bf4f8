"""Files are decoded block by block (``AudioStream``) and a model consumes the blocks as they come
(``window_chunks``): the same samples and the same results as reading the file whole, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

import midlevel
from midlevel import ModelConfig, TwoStageModel, example_clip, load_audio
from midlevel.audio import AudioError, AudioStream, WholeFileNeeded, is_silent
from midlevel.model import window_chunks, window_starts


def _write(path, frames: int, rate: int, channels: int, *, scale: float = 0.2, subtype: str = "FLOAT", seed: int = 0):
    data = (np.random.default_rng(seed).standard_normal((frames, channels)) * scale).astype(np.float32)
    sf.write(path, data, rate, subtype=subtype)
    return data


@pytest.mark.parametrize("frames", [1, 300, 4096, 4097, 3 * 4096, 50_001])
@pytest.mark.parametrize("rate,channels", [(44100, 2), (48000, 1), (22050, 2), (8000, 3)])
def test_blocks_are_soxrs_one_shot_resampling_of_numpys_mean(tmp_path, frames, rate, channels):
    """Peers: soundfile decodes the whole file, numpy averages the channels, soxr resamples in one call."""
    path = tmp_path / "x.wav"
    data = _write(path, frames, rate, channels)
    expected = data.mean(axis=1, dtype=np.float32)
    if rate != 22050:
        expected = soxr.resample(expected, rate, 22050, quality="HQ")
    stream = AudioStream(path, 22050, block_frames=4096)
    blocks = list(stream)
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    got = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)  # 1 frame at 48 kHz: no sample at 22.05
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(load_audio(path, 22050).samples, got)
    summary = stream.summary()
    assert (summary.n_samples, summary.original_sample_rate, summary.original_channels) == (len(got), rate, channels)
    assert summary.duration == pytest.approx(len(got) / 22050)
    assert summary.silent == is_silent(got) and summary.flags == ()


def test_summary_carries_what_load_audio_notes(tmp_path):
    loud = tmp_path / "loud.wav"
    _write(loud, 30_000, 44100, 2, scale=3.0)
    stream = AudioStream(loud, 22050, block_frames=1000)
    with pytest.raises(RuntimeError, match="before the stream was read"):
        stream.summary()
    list(stream)
    clip = load_audio(loud, 22050)
    assert stream.summary() == clip.summary()
    assert stream.summary().flags == ("over_full_scale",)

    cut = tmp_path / "cut.wav"
    _write(cut, 44100, 44100, 1, subtype="PCM_16")
    raw = cut.read_bytes()
    cut.write_bytes(raw[: len(raw) // 2])
    stream = AudioStream(cut, 22050)
    list(stream)
    assert stream.summary().flags == ("truncated",) == load_audio(cut, 22050).flags

    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, np.zeros(5000, np.float32), 22050)
    stream = AudioStream(quiet, 22050)
    list(stream)
    assert stream.summary().silent and stream.summary().n_samples == 5000


def test_input_a_stream_cannot_finish_is_read_whole(tmp_path):
    """Integer-range floats need a rescale known only from the whole file's peak; NaN is reported with its count."""
    ints = tmp_path / "ints.wav"
    _write(ints, 20_000, 44100, 2, scale=3000.0)
    with pytest.raises(WholeFileNeeded):
        list(AudioStream(ints, 22050))
    assert load_audio(ints, 22050).notes[0].startswith("rescaled from int16 range")

    nan = tmp_path / "nan.wav"
    data = np.zeros(20_000, np.float32)
    data[15_000] = np.nan
    sf.write(nan, data, 22050, subtype="FLOAT")
    with pytest.raises(WholeFileNeeded):
        list(AudioStream(nan, 22050, block_frames=4096))
    with pytest.raises(AudioError, match="NaN or inf in 1 of 20000 samples"):
        load_audio(nan, 22050)


def test_stream_errors_name_the_file(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        AudioStream(tmp_path / "missing.ogg")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all" * 100)
    with pytest.raises(AudioError, match="junk.wav: cannot decode audio"):
        AudioStream(junk)


@pytest.mark.parametrize("n", [0, 1, 99, 100, 101, 149, 150, 151, 200, 349, 350, 351, 777, 1000])
@pytest.mark.parametrize("batch", [1, 3])
def test_window_chunks_cut_the_windows_window_starts_places(n, batch):
    """Any split into blocks gives the runs of ``batch`` windows at ``window_starts``, short tracks zero padded."""
    window, hop = 100, 50
    track = np.arange(1, n + 1, dtype=np.float32)
    padded = np.pad(track, (0, max(window - n, 0)))
    starts = window_starts(n, window, hop)
    expected = [padded[s:s + window] for s in starts]
    for seed in range(4):
        cuts = np.sort(np.random.default_rng(seed).choice(np.arange(1, max(n, 2)), size=min(5, max(n - 1, 0)),
                                                          replace=False)) if n > 1 else []
        blocks = np.split(track, cuts)
        runs = list(window_chunks(iter(blocks), window, hop, batch))
        assert [len(starts) for _, starts in runs] == [len(starts[i:i + batch]) for i in range(0, len(starts), batch)]
        got = [span[s:s + window] for span, run_starts in runs for s in run_starts]
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b)
        for span, run_starts in runs:  # a run holds its own windows, not the track
            assert run_starts[0] == 0 and len(span) == run_starts[-1] + window


def _ogg(tmp_path, seconds: float):
    """The example clip as a 44.1 kHz stereo OGG, as recordings come (the right channel 10 ms late)."""
    clip = load_audio(example_clip(), 44100).samples
    track = np.tile(clip, int(seconds // 12) + 2)
    n, lag = int(seconds * 44100), 441
    path = tmp_path / "track.ogg"
    sf.write(path, np.stack([track[lag:n + lag], track[:n]], axis=1), 44100, format="OGG", subtype="VORBIS")
    return path


def test_explain_of_a_file_equals_explain_of_its_decoded_samples(tmp_path):
    """The shipped default reads a 44.1 kHz stereo OGG as it decodes (blocks of 1.5 s, runs of 3 windows here)
    and gives what it gives on the file decoded whole: every number, note and flag."""
    model = midlevel.load()
    path = _ogg(tmp_path, 41.3)
    streamed = model.explain(path, batch_size=3)
    whole = model.explain(load_audio(path, model.config.sample_rate), batch_size=3)
    assert streamed.source == whole.source == str(path)
    for field in ("concepts", "targets", "contributions", "window_concepts", "window_starts", "raw_concepts"):
        np.testing.assert_array_equal(getattr(streamed, field), getattr(whole, field), err_msg=field)
    assert (streamed.duration, streamed.padded, streamed.silent, streamed.ood_score, streamed.notes,
            streamed.flags()) == (whole.duration, whole.padded, whole.silent, whole.ood_score, whole.notes,
                                  whole.flags())


@pytest.mark.parametrize("seconds", [3.0, 10.0, 17.5])
def test_short_and_boundary_tracks_stream_as_they_read(tmp_path, seconds):
    """Shorter than a window (padded), exactly one, and one plus a part: a random compact model, torch only."""
    torch.manual_seed(0)
    model = TwoStageModel(ModelConfig(backbone="compact")).eval()
    path = tmp_path / "t.wav"
    rate = model.config.sample_rate
    sf.write(path, load_audio(example_clip(), rate).samples[: int(seconds * rate)], rate)
    streamed = model.explain(path, batch_size=2)
    whole = model.explain(load_audio(path, rate), batch_size=2)
    np.testing.assert_array_equal(streamed.window_concepts, whole.window_concepts)
    np.testing.assert_array_equal(streamed.targets, whole.targets)
    assert (streamed.padded, streamed.duration) == (whole.padded, whole.duration)


def test_a_float_file_that_needs_a_rescale_is_explained_from_the_whole_file(tmp_path):
    torch.manual_seed(0)
    model = TwoStageModel(ModelConfig(backbone="compact")).eval()
    path = tmp_path / "ints.wav"
    sf.write(path, load_audio(example_clip(), 22050).samples * 20000, 22050, subtype="FLOAT")
    streamed = model.explain(path)
    np.testing.assert_array_equal(streamed.targets, model.explain(load_audio(path, 22050)).targets)
    assert streamed.notes[0].startswith("rescaled from int16 range")
