"""load_audio and helpers, on real files written with soundfile (no mocks)."""

import contextlib

import numpy as np
import pytest
import soundfile as sf
import torch

from midlevel.audio import (
    Audio,
    AudioError,
    AudioFileNotFoundError,
    example_clip,
    is_silent,
    load_audio,
    pad_to_length,
)

SR = 22050


def tone(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spectrum) * sr / len(x)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def write(path, data, sr, **kw):
    sf.write(path, data, sr, **kw)
    return path


@contextlib.contextmanager
def raises_naming(name, exc=AudioError, match=None):
    """pytest.raises that also checks the message starts with the source name."""
    with pytest.raises(exc, match=match) as info:
        yield info
    assert str(info.value).startswith(str(name)), str(info.value)


# --- channels and rates -----------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2, 6])
def test_channels_are_averaged_to_mono(tmp_path, channels):
    data = np.stack([tone(200 + 150 * k, 0.5, SR, amp=0.2) for k in range(channels)], axis=1)
    path = write(tmp_path / f"{channels}ch.wav", data, SR, subtype="FLOAT")
    audio = load_audio(path)
    assert isinstance(audio, Audio)
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert audio.original_channels == channels and audio.original_sample_rate == SR
    np.testing.assert_allclose(audio.samples, data.mean(axis=1), atol=1e-7)
    assert audio.source == str(path)


def test_stereo_downmix_is_numpys_mean_bit_for_bit(tmp_path):
    """The fast two-channel path adds the columns and halves: the same float32 numbers as ``mean(axis=1)``,
    so a checkpoint's evaluation does not move, on full-scale noise (every exponent) and tiny values."""
    rng = np.random.default_rng(0)
    data = np.concatenate([rng.uniform(-1, 1, (4000, 2)), rng.standard_normal((4000, 2)) * 1e-30]).astype(np.float32)
    path = write(tmp_path / "stereo.wav", data, SR, subtype="FLOAT")
    decoded, _ = sf.read(path, dtype="float32", always_2d=True)
    assert np.array_equal(load_audio(path).samples, decoded.mean(axis=1))


@pytest.mark.parametrize("source_sr", [8000, 22050, 44100, 96000])
def test_resampling_keeps_length_frequency_and_level(tmp_path, source_sr):
    path = write(tmp_path / f"{source_sr}.wav", tone(1000, 1.0, source_sr), source_sr)
    audio = load_audio(path)
    assert audio.sample_rate == SR and audio.original_sample_rate == source_sr
    assert len(audio.samples) == SR and audio.duration == pytest.approx(1.0)
    assert abs(peak_hz(audio.samples, SR) - 1000) <= 1
    assert rms(audio.samples[1000:-1000]) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_other_target_rate_and_fractional_length():
    audio = load_audio(tone(440, 0.5, 44100)[:22051], 16000, source_sample_rate=44100)
    assert audio.sample_rate == 16000
    assert abs(len(audio.samples) - 22051 * 16000 / 44100) < 1


def test_very_short_clip_loads(tmp_path):
    path = write(tmp_path / "short.wav", tone(440, 0.1, 48000), 48000)
    audio = load_audio(path)
    assert len(audio.samples) == 2205 and audio.duration == pytest.approx(0.1)
    padded, was_padded = pad_to_length(audio.samples, SR)
    assert was_padded and len(padded) == SR and not padded[2205:].any()
    np.testing.assert_array_equal(padded[:2205], audio.samples)


def test_ten_minute_file(tmp_path):
    sr = 8000
    noise = (np.random.default_rng(0).standard_normal(600 * sr) * 0.1).astype(np.float32)
    path = write(tmp_path / "long.wav", noise, sr, subtype="PCM_16")
    del noise
    audio = load_audio(path)
    assert len(audio.samples) == 600 * SR and audio.duration == pytest.approx(600.0)
    assert audio.samples.dtype == np.float32 and not is_silent(audio.samples)


# --- silence and padding -----------------------------------------------------------------


def test_silence_loads_and_is_flagged(tmp_path):
    audio = load_audio(write(tmp_path / "silence.wav", np.zeros(SR, np.float32), SR))
    assert len(audio.samples) == SR and is_silent(audio.samples)
    assert is_silent(np.zeros(0, np.float32))


def test_is_silent_threshold():
    quiet = tone(440, 1.0, SR, amp=10 ** (-50 / 20) * np.sqrt(2))  # RMS -50 dBFS
    assert not is_silent(quiet)
    assert is_silent(quiet, threshold_db=-40)
    assert is_silent(quiet * 0.1)  # -70 dBFS


def test_pad_to_length_leaves_long_input_alone():
    x = np.ones(10, np.float32)
    same, was_padded = pad_to_length(x, 5)
    assert same is x and not was_padded
    padded, was_padded = pad_to_length(np.ones((2, 3), np.float32), 5)
    assert was_padded and padded.shape == (2, 5) and padded.dtype == np.float32


# --- bad files -----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_in_file(tmp_path, bad):
    data = tone(440, 0.5, SR)
    data[1000] = bad
    path = write(tmp_path / "bad.wav", data, SR, subtype="FLOAT")
    with raises_naming(path, match=r"NaN or inf in 1 of 11025 samples.*first at sample 1000"):
        load_audio(path)


def test_random_bytes_with_wav_extension(tmp_path):
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(0).bytes(4000))
    with raises_naming(path, match="cannot decode"):
        load_audio(path)


@pytest.mark.parametrize("ext", ["wav", "flac"])
def test_truncated_header(tmp_path, ext):
    path = write(tmp_path / f"cut.{ext}", tone(440, 0.5, SR), SR)
    path.write_bytes(path.read_bytes()[:20])
    with raises_naming(path, match="cannot decode"):
        load_audio(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.mp3"
    with raises_naming(path, AudioFileNotFoundError, match="no such file") as info:
        load_audio(path)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, AudioError)


def test_directory(tmp_path):
    with raises_naming(tmp_path, match="directory"):
        load_audio(tmp_path)


def test_empty_files(tmp_path):
    zero_bytes = tmp_path / "zero.wav"
    zero_bytes.touch()
    with raises_naming(zero_bytes, match="empty"):
        load_audio(zero_bytes)
    zero_frames = write(tmp_path / "frames.wav", np.zeros((0, 2), np.float32), SR)
    with raises_naming(zero_frames, match="0 frames"):
        load_audio(zero_frames)


def test_name_replaces_path_in_source_and_errors(tmp_path):
    path = write(tmp_path / "a.wav", tone(440, 0.1, SR), SR)
    assert load_audio(path, name="upload-1").source == "upload-1"
    with raises_naming("upload-1"):
        load_audio(tmp_path / "gone.wav", name="upload-1")


# --- compressed formats ----------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["mp3", "ogg"])
def test_lossy_formats_decode(tmp_path, ext):
    path = write(tmp_path / f"tone.{ext}", tone(440, 1.0, 44100), 44100)
    audio = load_audio(path)
    assert audio.original_sample_rate == 44100
    assert abs(len(audio.samples) - SR) <= 0.05 * SR  # encoder delay / padding
    assert abs(peak_hz(audio.samples, SR) - 440) <= 2
    assert rms(audio.samples[2000:-2000]) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


# --- arrays ------------------------------------------------------------------------------------


def test_numpy_array_is_copied_not_aliased():
    x = tone(440, 0.2, SR)
    audio = load_audio(x, source_sample_rate=SR)
    assert audio.source == "<array>" and audio.original_channels == 1
    np.testing.assert_array_equal(audio.samples, x)
    x[:] = 0
    assert audio.samples.any()


def test_float64_and_torch_channels_first():
    stereo = np.stack([tone(300, 0.5, 44100), tone(700, 0.5, 44100)]).astype(np.float64)
    from_numpy = load_audio(stereo, source_sample_rate=44100)
    from_torch = load_audio(torch.from_numpy(stereo).requires_grad_(), source_sample_rate=44100)
    assert from_numpy.original_channels == from_torch.original_channels == 2
    assert from_torch.samples.dtype == np.float32 and len(from_torch.samples) == SR // 2
    np.testing.assert_allclose(from_torch.samples, from_numpy.samples, atol=1e-6)
    expected = load_audio(stereo.mean(axis=0), source_sample_rate=44100).samples
    np.testing.assert_allclose(from_numpy.samples, expected, atol=1e-6)


@pytest.mark.parametrize(
    "dtype, values, expected",
    [
        (np.int16, [-32768, 0, 16384, 32767], [-1.0, 0.0, 0.5, 32767 / 32768]),
        (np.int32, [-(2**31), 0, 2**30], [-1.0, 0.0, 0.5]),
        (np.uint8, [0, 128, 192, 255], [-1.0, 0.0, 0.5, 127 / 128]),
        (np.int8, [-128, 0, 64], [-1.0, 0.0, 0.5]),
    ],
)
def test_integer_arrays_are_scaled(dtype, values, expected):
    audio = load_audio(np.array(values, dtype=dtype), source_sample_rate=SR)
    assert audio.samples.dtype == np.float32
    np.testing.assert_allclose(audio.samples, expected, atol=1e-7)


def test_int16_stereo_tensor():
    x = torch.tensor([[16384, -16384, 0], [0, 0, 32767]], dtype=torch.int16)
    audio = load_audio(x, source_sample_rate=SR)
    np.testing.assert_allclose(audio.samples, [0.25, -0.25, 32767 / 65536], atol=1e-7)


def test_array_errors():
    x = tone(440, 0.1, SR)
    with raises_naming("<array>", match="source_sample_rate is required"):
        load_audio(x)
    with raises_naming("clip", match="channels-last.*transpose"):
        load_audio(np.stack([x, x], axis=1), source_sample_rate=SR, name="clip")
    with raises_naming("<array>", match="unsupported sample dtype int64"):
        load_audio(x.astype(np.int64), source_sample_rate=SR)
    with raises_naming("<array>", match="complex"):
        load_audio(x.astype(np.complex64), source_sample_rate=SR)
    with raises_naming("<array>", match="1-D or 2-D"):
        load_audio(x.reshape(1, 1, -1), source_sample_rate=SR)
    with raises_naming("<array>", match="no samples"):
        load_audio(np.zeros((2, 0), np.float32), source_sample_rate=SR)
    for rate in (0, -22050, 22050.5, float("nan")):
        with raises_naming("<array>", match="positive whole number"):
            load_audio(x, source_sample_rate=rate)
        with raises_naming("<array>", match="positive whole number"):
            load_audio(x, rate, source_sample_rate=SR)


def test_non_finite_array_reports_position():
    x = torch.zeros(2, 100)
    x[1, 42] = float("nan")
    with raises_naming("mic", match="first at sample 42"):
        load_audio(x, source_sample_rate=8000, name="mic")


def test_file_rejects_source_sample_rate(tmp_path):
    path = write(tmp_path / "a.wav", tone(440, 0.1, SR), SR)
    with raises_naming(path, match="only for arrays"):
        load_audio(path, source_sample_rate=44100)


# --- bundled example -----------------------------------------------------------------------------


def test_example_clip():
    path = example_clip()
    assert path.is_file() and path.suffix == ".flac"
    audio = load_audio(path)
    assert audio.duration == pytest.approx(12.0, abs=0.1)
    assert audio.original_sample_rate == SR and audio.original_channels == 1
    assert not is_silent(audio.samples) and np.abs(audio.samples).max() <= 1.0
