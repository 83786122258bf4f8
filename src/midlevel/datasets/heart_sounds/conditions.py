"""Recording conditions of a phonocardiogram: what reaches the file besides the heart.

The Challenge 2016 recordings were made in clinics and at home, by different teams with different
stethoscopes, and many are noisy (Liu et al. 2016 list stethoscope motion, breathing, talking, intestinal
sounds and the sensor's own noise). Each of these is drawn per recording (``sample_conditions``, from a
random stream of its own) and recorded beside the concepts:

- **sensor noise**: white or pink, always, at ``sensor_snr_db`` below the heart sounds' RMS;
- **breathing**: band-limited noise (80-500 Hz: vesicular breath sounds) whose loudness follows the
  airflow of the patient's own respiration (``physiology.respiration``: the same rate and phase that widen
  the S2 split), louder in inspiration (expiration at 0.4 of it);
- **stethoscope motion / friction**: broadband bursts (50-600 ms, rubbing modulated at 5-20 Hz) with a
  low thump (10-30 Hz) where the chest piece knocks;
- **talking**: speech synthesised by ``espeak-ng`` (clinic phrases, a random voice variant, pitch and rate),
  resampled to 2000 Hz and low-passed at 500 Hz as speech conducted through the chest; without espeak-ng,
  voiced pulse trains through two formant resonators in syllable bursts (``talk_source`` records which);
- **intestinal sounds**: clusters of short gurgles (5-40 ms damped tones at 150-700 Hz, gliding);
- **band-limiting** of the stethoscope: ``none``, ``electronic`` 25-400 Hz (the band of common PCG
  preprocessing), ``bell`` 20-200 Hz (low frequencies, where S3/S4 live), ``diaphragm`` 100-900 Hz (high
  frequencies; S3 and S4 fade), a 2nd-order Butterworth band-pass run forwards and backwards (zero
  phase: no sound moves, so the segmentation stays true);
- **gain**: -10 ... +2 dB on the whole recording, then clipping at full scale (``clipped`` records the
  share of clipped samples).

A sound's level (``*_db``) is its RMS while it sounds, in dB re. the heart sounds' RMS over the whole
recording (a +10 dB motion burst is ten dB louder than the heart while it lasts). ``LEVELS`` sets what is
drawn: ``clean`` (sensor noise 35-50 dB down, nothing else), ``moderate`` and ``noisy``.

None of these changes a concept of the heart (they are defined on the dry render, ``physiology``) or the
label; band-limiting and gain change what an intensity *measured* on the file reads, and the added sounds
set ``snr_db`` and ``noise_level`` (measured here: heart sounds vs everything added, after the band-pass).
"""

from __future__ import annotations

import io
import math
import shutil
import subprocess
from dataclasses import asdict, dataclass

import numpy as np

from .physiology import SAMPLE_RATE

LEVELS = ("clean", "moderate", "noisy")
BANDS = {"none": None, "electronic": (25.0, 400.0), "bell": (20.0, 200.0), "diaphragm": (100.0, 900.0)}
GAIN_DB = (-10.0, 2.0)
#: level -> (sensor SNR dB range, (chance, dB range) of breathing, motion bursts (chance, most, dB), talking,
#: gurgle clusters (chance, most, dB))
LEVEL_PROFILES = {
    "clean": {"sensor": (35.0, 50.0), "breathing": (0.0, (-20.0, -8.0)), "motion": (0.0, 0, (0.0, 10.0)),
              "talking": (0.0, (-15.0, -3.0)), "gurgles": (0.0, 0, (-10.0, 0.0))},
    "moderate": {"sensor": (20.0, 35.0), "breathing": (0.6, (-20.0, -8.0)), "motion": (0.3, 2, (0.0, 10.0)),
                 "talking": (0.15, (-15.0, -3.0)), "gurgles": (0.3, 3, (-10.0, 0.0))},
    "noisy": {"sensor": (5.0, 20.0), "breathing": (0.9, (-12.0, 0.0)), "motion": (0.8, 6, (0.0, 15.0)),
              "talking": (0.4, (-10.0, 3.0)), "gurgles": (0.5, 5, (-6.0, 6.0))},
}
ABSENT_DB = -120.0  # the level recorded for a sound that is not there
PHRASES = ("breathe in", "breathe out", "hold your breath", "does this hurt", "is it cold", "lie still please",
           "how are you feeling today", "we are almost done", "can you hear me", "turn to your left",
           "take a deep breath", "relax your shoulders", "any pain in your chest", "thank you", "one more time")
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "f1", "f2", "f3", "f4")


def talk_source() -> str:
    """``espeak-ng`` where the program is installed, else ``formant-noise``."""
    return "espeak-ng" if shutil.which("espeak-ng") else "formant-noise"


@dataclass(frozen=True)
class PcgConditions:
    """One recording's conditions (``cond_*`` columns of concepts.csv)."""

    level: str
    sensor_noise: str  # "white" or "pink"
    sensor_snr_db: float
    breathing_db: float  # ABSENT_DB: none
    motion_bursts: int
    motion_db: float
    talking_db: float
    talk_source: str  # "none", "espeak-ng", "formant-noise"
    gurgle_clusters: int
    gurgle_db: float
    band: str
    gain_db: float

    def to_record(self) -> dict:
        return asdict(self)


def sample_conditions(rng: np.random.Generator, level: str, band: str) -> PcgConditions:
    """Draw one recording's conditions at ``level`` with the stethoscope's ``band`` (every draw is made,
    so the stream stays aligned whatever is chosen)."""
    if level not in LEVEL_PROFILES:
        raise ValueError(f"level must be one of {LEVELS}; got {level!r}")
    if band not in BANDS:
        raise ValueError(f"band must be one of {sorted(BANDS)}; got {band!r}")
    prof = LEVEL_PROFILES[level]
    u = rng.uniform(size=14)

    def within(span, v):
        return float(span[0] + (span[1] - span[0]) * v)

    sensor = "white" if u[0] < 0.5 else "pink"
    sensor_snr = within(prof["sensor"], u[1])
    breathing = within(prof["breathing"][1], u[3]) if u[2] < prof["breathing"][0] else ABSENT_DB
    motion_n = 1 + int(u[5] * prof["motion"][1]) if u[4] < prof["motion"][0] else 0
    motion_db = within(prof["motion"][2], u[6]) if motion_n else ABSENT_DB
    talking = within(prof["talking"][1], u[8]) if u[7] < prof["talking"][0] else ABSENT_DB
    gurgle_n = 1 + int(u[10] * prof["gurgles"][1]) if u[9] < prof["gurgles"][0] else 0
    gurgle_db = within(prof["gurgles"][2], u[11]) if gurgle_n else ABSENT_DB
    gain = GAIN_DB[0] + (GAIN_DB[1] - GAIN_DB[0]) * u[12]
    return PcgConditions(level, sensor, float(sensor_snr), float(breathing), motion_n, float(motion_db),
                         float(talking), talk_source() if talking > ABSENT_DB else "none", gurgle_n,
                         float(gurgle_db), band, float(gain))


# ---- the sounds ----------------------------------------------------------------------------------------


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if len(x) else 0.0


def _bandpass(x: np.ndarray, lo: float, hi: float, order: int = 2) -> np.ndarray:
    from scipy.signal import butter, sosfiltfilt

    sos = butter(order, [lo, min(hi, 0.45 * SAMPLE_RATE)], btype="bandpass", fs=SAMPLE_RATE, output="sos")
    return sosfiltfilt(sos, x)


def _lowpass(x: np.ndarray, hi: float, order: int = 2) -> np.ndarray:
    from scipy.signal import butter, sosfiltfilt

    return sosfiltfilt(butter(order, hi, btype="lowpass", fs=SAMPLE_RATE, output="sos"), x)


def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS white or pink (1/f power) noise."""
    x = rng.standard_normal(n)
    if colour == "pink":
        spectrum = np.fft.rfft(x)
        f = np.arange(len(spectrum), dtype=np.float64)
        f[0] = 1.0
        x = np.fft.irfft(spectrum / np.sqrt(f), n)
    return x / max(_rms(x), 1e-12)


def breathing(n: int, resp_rate_hz: float, resp_phase: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS breath sounds following the airflow of a respiration at ``resp_rate_hz``, phase
    ``resp_phase`` (lung volume ``0.5 (1 - cos(2 pi f t + phase))``; airflow its derivative)."""
    t = np.arange(n) / SAMPLE_RATE
    flow = np.sin(2 * math.pi * resp_rate_hz * t + resp_phase)  # > 0: inspiration
    env = np.where(flow > 0, flow, 0.4 * -flow) ** 1.5
    x = env * _bandpass(rng.standard_normal(n), 80.0, 500.0)
    return x / max(_rms(x), 1e-12)


def motion_burst(rng: np.random.Generator) -> np.ndarray:
    """One unit-RMS stethoscope motion/friction burst (50-600 ms): broadband rubbing with a low thump."""
    n = int(SAMPLE_RATE * rng.uniform(0.05, 0.6))
    t = np.arange(n) / SAMPLE_RATE
    rub = 0.6 + 0.4 * np.sin(2 * math.pi * rng.uniform(5, 20) * t + rng.uniform(0, 2 * math.pi))
    env = np.minimum(t / 0.005, 1.0) * np.exp(-t / rng.uniform(0.05, 0.4)) * rub
    x = env * _bandpass(rng.standard_normal(n + 400), 20.0, 950.0)[200:200 + n]
    f = rng.uniform(10, 30)
    x += rng.uniform(0.5, 2.0) * np.sin(2 * math.pi * f * t) * np.exp(-t / 0.03) * _rms(x) * 3
    return x / max(_rms(x), 1e-12)


def gurgle_cluster(rng: np.random.Generator) -> np.ndarray:
    """One unit-RMS cluster of bowel sounds: 3-15 damped gliding tones of 5-40 ms over 0.2-1.5 s."""
    n = int(SAMPLE_RATE * rng.uniform(0.2, 1.5))
    x = np.zeros(n)
    for _ in range(int(rng.integers(3, 16))):
        m = int(SAMPLE_RATE * rng.uniform(0.005, 0.04))
        t = np.arange(m) / SAMPLE_RATE
        f0, f1 = rng.uniform(150, 700, size=2)
        phase = 2 * math.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * t[-1] + 1e-9))
        start = int(rng.integers(0, max(n - m, 1)))
        x[start:start + m] += rng.uniform(0.3, 1.0) * np.sin(phase) * np.hanning(m)
    return x / max(_rms(x), 1e-12)


def _espeak(text: str, variant: str, speed: int, pitch: int) -> np.ndarray:
    import soundfile as sf
    from scipy.signal import resample_poly

    run = subprocess.run(["espeak-ng", "-v", f"en-us+{variant}", "-s", str(speed), "-p", str(pitch), "--stdout", text],
                         capture_output=True)
    if run.returncode != 0 or len(run.stdout) < 100:
        raise RuntimeError(f"espeak-ng failed (exit {run.returncode}): {run.stderr.decode(errors='replace')[:200]}")
    samples, rate = sf.read(io.BytesIO(run.stdout), dtype="float64", always_2d=True)
    g = math.gcd(int(rate), SAMPLE_RATE)
    return resample_poly(samples.mean(axis=1), SAMPLE_RATE // g, int(rate) // g)


def _formant_speech(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Syllable bursts of a voiced pulse train (f0 90-220 Hz) through two formant resonators."""
    from scipy.signal import lfilter

    n = int(seconds * SAMPLE_RATE)
    out = np.zeros(n)
    f0 = rng.uniform(90, 220)
    pos = 0
    while pos < n:
        m = int(SAMPLE_RATE * rng.uniform(0.12, 0.3))
        pulses = np.zeros(m)
        period = SAMPLE_RATE / (f0 * rng.uniform(0.9, 1.1))
        pulses[(np.arange(0, m, period)).astype(int)] = 1.0
        src = pulses + 0.1 * rng.standard_normal(m)
        for formant in (rng.uniform(300, 800), rng.uniform(850, 950)):
            r = math.exp(-math.pi * 80 / SAMPLE_RATE)
            src = lfilter([1 - r], [1, -2 * r * math.cos(2 * math.pi * formant / SAMPLE_RATE), r * r], src)
        seg = src * np.hanning(m)
        out[pos:pos + m] += seg[: n - pos]
        pos += m + int(SAMPLE_RATE * rng.uniform(0.05, 0.15))
    return out


def talking(rng: np.random.Generator, source: str) -> np.ndarray:
    """One unit-RMS utterance as heard through the chest (low-passed at 500 Hz)."""
    words = " ".join(PHRASES[int(i)] for i in rng.integers(0, len(PHRASES), size=int(rng.integers(1, 4))))
    variant = ESPEAK_VARIANTS[int(rng.integers(len(ESPEAK_VARIANTS)))]
    speed, pitch = int(rng.integers(130, 190)), int(rng.integers(20, 80))
    if source == "espeak-ng":
        x = _espeak(words, variant, speed, pitch)
    else:
        x = _formant_speech(rng, 0.4 + 0.35 * len(words.split()))
    x = _lowpass(x, 500.0)
    loud = np.abs(x) > 0.01 * np.abs(x).max()
    x = x[np.argmax(loud): len(x) - np.argmax(loud[::-1])]  # without the leading and trailing silence
    return x / max(_rms(x), 1e-12)


def _place(out: np.ndarray, burst: np.ndarray, start: int) -> None:
    m = min(len(burst), len(out) - start)
    out[start:start + m] += burst[:m]


def apply_conditions(heart: np.ndarray, c: PcgConditions, rng: np.random.Generator, *, resp_rate_hz: float,
                     resp_phase: float) -> tuple[np.ndarray, dict[str, float]]:
    """The recording: ``heart`` (the dry render) plus the sounds of ``c``, band-limited, gained and clipped;
    and what was measured: ``snr_db`` (heart sounds vs everything added, after the band-pass),
    ``noise_level`` (the added sounds' share of the power, ``1 / (1 + 10^(snr_db / 10))``), ``clipped``."""
    n = len(heart)
    ref = max(_rms(heart), 1e-12)
    u = rng.uniform(size=5)  # the streams of the sounds, drawn whether they sound or not
    streams = [np.random.default_rng(int(v * 2 ** 32)) for v in u]
    noise = coloured_noise(n, c.sensor_noise, streams[0]) * ref * 10 ** (-c.sensor_snr_db / 20)
    if c.breathing_db > ABSENT_DB:
        noise += breathing(n, resp_rate_hz, resp_phase, streams[1]) * ref * 10 ** (c.breathing_db / 20)
    for _ in range(c.motion_bursts):
        burst = motion_burst(streams[2])
        _place(noise, burst * ref * 10 ** (c.motion_db / 20), int(streams[2].integers(0, n)))
    for _ in range(c.gurgle_clusters):
        cluster = gurgle_cluster(streams[3])
        _place(noise, cluster * ref * 10 ** (c.gurgle_db / 20), int(streams[3].integers(0, n)))
    if c.talking_db > ABSENT_DB:
        speech = talking(streams[4], c.talk_source)
        start = int(streams[4].integers(0, max(n - len(speech) // 2, 1)))
        _place(noise, speech * ref * 10 ** (c.talking_db / 20), start)
    band = BANDS[c.band]
    if band is not None:
        heart, noise = _bandpass(heart, *band, order=1), _bandpass(noise, *band, order=1)
    gain = 10 ** (c.gain_db / 20)
    snr = 10 * math.log10(max(float(np.sum(heart ** 2)), 1e-30) / max(float(np.sum(noise ** 2)), 1e-30))
    mixed = gain * (heart + noise)
    clipped = float(np.mean(np.abs(mixed) >= 1.0))
    return np.clip(mixed, -1.0, 1.0), {"snr_db": snr, "noise_level": 1.0 / (1.0 + 10 ** (snr / 10)),
                                       "clipped": clipped}
