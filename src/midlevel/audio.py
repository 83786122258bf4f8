"""Reading sound: every model input goes through `load_audio`.

Conventions, chosen so that the same sound gives the same model input whatever its container:

- Channels are averaged to mono (equal weights, also for 5.1: no LFE or centre weighting).
  Averaging rather than summing keeps the level in [-1, 1] and matches librosa's `to_mono`.
- Rates are converted with soxr (called directly) at "HQ" quality, the resampler librosa
  uses by default (`res_type="soxr_hq"`): well maintained, fast, band-limited, with its delay
  compensated. Output equals `librosa.load(path, sr=...)` sample for sample, except that
  it has round(n * sample_rate / original_rate) samples where librosa pads to the ceiling.
- Samples are float32. Integer arrays are scaled to [-1, 1) the way WAV files are:
  int8 / 2**7, int16 / 2**15, int32 / 2**31, uint8 (x - 128) / 2**7. Float arrays are
  taken as they are (not clipped).
- Files are decoded by libsndfile (via soundfile), which reads WAV, FLAC, OGG/Vorbis and
  MP3 itself; other formats (m4a, ...) must be converted first, e.g. with ffmpeg.

Silence and very short audio load without complaint; the models flag them later using
`is_silent` and `pad_to_length`.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import numbers
import os
import pathlib
from dataclasses import dataclass
from importlib import resources

import numpy as np
import soundfile as sf
import soxr

from .errors import MidlevelError

_INT_SCALES = {  # dtype -> (offset, scale) so that (x - offset) / scale lies in [-1, 1)
    np.dtype(np.int8): (0, 2.0**7),
    np.dtype(np.uint8): (128, 2.0**7),
    np.dtype(np.int16): (0, 2.0**15),
    np.dtype(np.int32): (0, 2.0**31),
}


class AudioError(MidlevelError, ValueError):
    """Audio that cannot be used as model input; the message starts with the source name."""


class AudioFileNotFoundError(AudioError, FileNotFoundError):
    """The audio file does not exist (also catchable as FileNotFoundError)."""


@dataclass(frozen=True)
class Audio:
    """Mono float32 samples at `sample_rate`, plus what the input was before conversion."""

    samples: np.ndarray
    sample_rate: int
    source: str
    original_sample_rate: int
    original_channels: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.sample_rate


def load_audio(
    source,
    sample_rate: int = 22050,
    *,
    source_sample_rate: int | None = None,
    name: str | None = None,
) -> Audio:
    """Load a file (str / PathLike) or an array into mono float32 at `sample_rate`.

    Arrays (numpy or torch) are 1-D mono or 2-D channels-first (channels, samples), as
    librosa and torchaudio return them, and need `source_sample_rate`. `name` replaces the
    path or "<array>" in `Audio.source` and in error messages.
    Raises AudioError (AudioFileNotFoundError for a missing file) for anything unusable.
    """
    is_path = isinstance(source, (str, os.PathLike))
    label = str(name) if name is not None else os.fspath(source) if is_path else "<array>"
    sample_rate = _check_rate(sample_rate, "sample_rate", label)
    if is_path:
        if source_sample_rate is not None:
            raise AudioError(
                f"{label}: source_sample_rate is only for arrays; the file states its rate"
            )
        mono, original_rate, channels = _read_file(os.fspath(source), label)
    else:
        if source_sample_rate is None:
            raise AudioError(f"{label}: source_sample_rate is required for array input")
        original_rate = _check_rate(source_sample_rate, "source_sample_rate", label)
        mono, channels = _array_to_mono(source, label)
    _check_finite(mono, original_rate, label)
    if original_rate != sample_rate:
        mono = soxr.resample(mono, original_rate, sample_rate, quality="HQ")
    return Audio(mono, sample_rate, label, original_rate, channels)


def file_length(path) -> tuple[int, int]:
    """(frames, sample rate) as a sound file's header states them, without decoding it; ``AudioError``
    naming the file when it is missing, empty or cannot be read as audio (``midlevel evaluate`` lists such
    files and chooses how to run the model from the lengths)."""
    import soundfile as sf

    label = os.fspath(path)
    _check_file(label, label)
    try:
        info = sf.info(label)
    except (sf.SoundFileError, RuntimeError) as exc:
        raise AudioError(f"{label}: cannot decode audio ({getattr(exc, 'error_string', exc)}); "
                         "expected WAV, FLAC, OGG/Vorbis or MP3") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError(f"{label}: file contains no audio")
    return int(info.frames), int(info.samplerate)


def is_silent(samples: np.ndarray, threshold_db: float = -60.0) -> bool:
    """True if the RMS level of float samples in [-1, 1] is below `threshold_db` dBFS.

    All-zero (or empty) input is silent whatever the threshold. Sums in float32 via BLAS
    so a 10-minute clip needs no float64 copy; the rounding error is far below 0.01 dB.
    """
    x = np.asarray(samples, dtype=np.float32).ravel()
    if x.size == 0:
        return True
    rms = math.sqrt(float(np.dot(x, x)) / x.size)
    return rms == 0.0 or 20.0 * math.log10(rms) < threshold_db


def pad_to_length(samples: np.ndarray, n: int) -> tuple[np.ndarray, bool]:
    """Zero-pad the last axis at the end to `n` samples; longer input is returned unchanged.

    Returns (samples, was_padded) so callers can record that the model saw padding.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    missing = n - samples.shape[-1]
    if missing <= 0:
        return samples, False
    return np.pad(samples, [(0, 0)] * (samples.ndim - 1) + [(0, missing)]), True


_resource_files = contextlib.ExitStack()
atexit.register(_resource_files.close)


def example_clip() -> pathlib.Path:
    """Path of the bundled 12 s example, a Bach chorale on piano (provenance: data/README.md)."""
    ref = resources.files("midlevel").joinpath("data", "example.flac")
    if not ref.is_file():
        raise FileNotFoundError(f"{ref}: bundled example clip missing; package data not installed")
    # A real file for normal installs; as_file extracts one (kept until exit) from a zip.
    return _resource_files.enter_context(resources.as_file(ref))


def _check_rate(rate, what: str, label: str) -> int:
    """Accept a positive whole number of Hz (int, numpy int, or float like 44100.0)."""
    if (
        isinstance(rate, numbers.Real)
        and not isinstance(rate, bool)
        and math.isfinite(rate)
        and rate > 0
        and rate == int(rate)
    ):
        return int(rate)
    raise AudioError(f"{label}: {what} must be a positive whole number of Hz, got {rate!r}")


def _check_file(path: str, label: str) -> None:
    """The refusals every file read shares: missing, a directory, empty."""
    if not os.path.exists(path):
        raise AudioFileNotFoundError(f"{label}: no such file")
    if os.path.isdir(path):
        raise AudioError(f"{label}: is a directory, not an audio file")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{label}: file is empty (0 bytes)")


def _read_file(path: str, label: str) -> tuple[np.ndarray, int, int]:
    """Decode a file to (mono float32, rate, channels), naming the file in every error."""
    _check_file(path, label)
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except sf.SoundFileError as err:
        detail = getattr(err, "error_string", str(err))  # libsndfile's reason, without the path
        raise AudioError(
            f"{label}: cannot decode audio ({detail}); expected WAV, FLAC, OGG/Vorbis or MP3"
        ) from err
    frames, channels = data.shape
    if frames == 0:
        raise AudioError(f"{label}: file contains no audio ({channels} channel(s), 0 frames)")
    # (frames, channels) -> frames; a mono column is already contiguous, no copy needed.
    mono = data[:, 0] if channels == 1 else data.mean(axis=1)
    return mono, rate, channels


def _array_to_mono(array, label: str) -> tuple[np.ndarray, int]:
    """Array or tensor -> (mono float32 copy, channels); never aliases the caller's memory."""
    if hasattr(array, "detach") and hasattr(array, "cpu"):  # torch.Tensor, without importing torch
        array = array.detach().cpu()
        if array.is_floating_point():
            array = array.float()  # numpy has no bfloat16
        array = array.numpy()
    array = np.asarray(array)
    if array.size == 0:
        raise AudioError(f"{label}: array has no samples (shape {array.shape})")
    dtype = array.dtype
    if dtype not in _INT_SCALES and dtype.kind != "f":
        raise AudioError(
            f"{label}: unsupported sample dtype {dtype}; "
            "use float (in [-1, 1]) or int8/int16/int32/uint8"
        )
    if array.ndim == 1:
        channels, mono = 1, np.array(array, dtype=np.float32)
    elif array.ndim == 2:
        channels, frames = array.shape
        if channels > frames:
            raise AudioError(
                f"{label}: 2-D array of shape {array.shape} looks channels-last (more channels "
                f"than samples); transpose it to (channels, samples), e.g. array.T"
            )
        mono = array.mean(axis=0, dtype=np.float32)
    else:
        raise AudioError(
            f"{label}: expected a 1-D or 2-D (channels, samples) array, got shape {array.shape}"
        )
    if dtype in _INT_SCALES:
        offset, scale = _INT_SCALES[dtype]
        mono -= offset
        mono /= scale
    return mono, channels


def _check_finite(mono: np.ndarray, rate: int, label: str) -> None:
    """NaN/inf would spread through resampling and every feature, so refuse them here."""
    if np.isfinite(np.sum(mono, dtype=np.float64)):  # the common case, without a full-length mask
        return
    bad = ~np.isfinite(mono)
    if bad.any():
        first = int(np.argmax(bad))
        raise AudioError(
            f"{label}: NaN or inf in {int(bad.sum())} of {mono.size} samples (after downmix to "
            f"mono), the first at sample {first} ({first / rate:.3f} s)"
        )
