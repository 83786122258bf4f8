"""Recording conditions: what happens to a performance between the instrument and the listener's file.

The dry corpus renders every clip with one soundfont, no room, a fixed gain and a lossless file, so a
model trained on it can learn shortcuts that recorded music breaks (absolute level, one timbre per
instrument, no codec artefacts). Domain randomisation draws these conditions per clip, from a stream of
random numbers of their own (``[seed, index, 3]``), so a randomised build has exactly the clips, factors
and labels of the dry build of the same seed and differs only in its audio:

- soundfont: one of the General MIDI soundfonts Debian ships (FluidR3, MuseScore General, TimGM6mb,
  the OPL-3 FM bank), drawn per clip;
- room: a mild reverb (Spotify's pedalboard ``Reverb``: room size, wet level) and a microphone /
  mastering EQ tilt (low and high shelves of opposite gain);
- mastering: a compressor on half of the clips, then the overall level drawn over 36 dB (the file's
  gain, not the played dynamics), then a fast 20:1 compressor as a limiter (and a final clip guard);
- background noise (pink or brown) at 20-45 dB SNR on half of the clips;
- a lossy codec round trip on two thirds of the clips: MP3 at about 24-160 kb/s or Ogg Vorbis.

Which labels each may change (docs/controlled_corpus.md, "Recording conditions") : none of the seven
mid-level ratings (formulas over the performed notes: a soundfont, a room kept mild, a level, noise at
20 dB SNR or above and a codec leave the notes, their timing and their harmony as they were played) and
not the loudness rating either, which follows the performed velocities (the played dynamics), not the
file's gain: that is the point of drawing the gain over a wide range.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

#: General MIDI soundfonts from Debian packages, by the name recorded per clip
SOUNDFONTS = {
    "fluidr3": "/usr/share/sounds/sf2/FluidR3_GM.sf2",  # fluid-soundfont-gm
    "musescore": "/usr/share/sounds/sf3/MuseScore_General.sf3",  # musescore-general-soundfont
    "timgm6mb": "/usr/share/sounds/sf2/TimGM6mb.sf2",  # timgm6mb-soundfont
    "opl3": "/usr/share/sounds/sf2/OPL-3_FM_128M.sf2",  # opl3-soundfont
}
DEBIAN_PACKAGES = ("fluid-soundfont-gm", "musescore-general-soundfont", "timgm6mb-soundfont", "opl3-soundfont")
LEVEL_DB = (-30.0, 6.0)  # overall gain applied to the render (the limiter keeps peaks below -1 dBFS)
SNR_DB = (20.0, 45.0)
#: libsndfile's MP3 compression levels -> about 160 (0.0) to 24 (0.9) kb/s at 22050 Hz mono, constant bit rate
MP3_LEVELS = (0.0, 0.9)
OGG_LEVELS = (0.0, 0.9)  # Vorbis: about 90 to 37 kb/s


@dataclass(frozen=True)
class Conditions:
    """One clip's recording conditions, recorded beside its factors (``conditions.csv``)."""

    soundfont: str
    reverb_room: float
    reverb_wet: float
    tilt_db: float
    compressor_threshold_db: float  # 0: no compressor
    level_db: float
    noise: str  # "none", "pink", "brown"
    snr_db: float
    codec: str  # "none", "mp3", "ogg"
    codec_level: float

    def to_record(self) -> dict:
        return asdict(self)


def available_soundfonts() -> dict[str, str]:
    return {k: v for k, v in SOUNDFONTS.items() if Path(v).is_file()}


def sample_conditions(rng: np.random.Generator, soundfonts: dict[str, str] | None = None) -> Conditions:
    """Draw one clip's conditions (every draw is made, so the stream stays aligned whatever is chosen)."""
    fonts = sorted(soundfonts if soundfonts is not None else available_soundfonts())
    if not fonts:
        raise RuntimeError("no General MIDI soundfont found; install " + " ".join(DEBIAN_PACKAGES))
    font = fonts[int(rng.integers(len(fonts)))]
    room, wet = float(rng.uniform(0.05, 0.6)), float(rng.uniform(0.0, 0.3))
    tilt = float(rng.uniform(-6.0, 6.0))
    compress = float(rng.uniform(-30.0, -10.0)) if rng.random() < 0.5 else 0.0
    level = float(rng.uniform(*LEVEL_DB))
    noise_u, snr = rng.random(), float(rng.uniform(*SNR_DB))
    noise = "none" if noise_u < 0.5 else ("pink" if noise_u < 0.8 else "brown")
    codec_u = rng.random()
    codec = "none" if codec_u < 1 / 3 else ("mp3" if codec_u < 0.8 else "ogg")
    levels = MP3_LEVELS if codec == "mp3" else OGG_LEVELS
    codec_level = float(rng.uniform(*levels))
    return Conditions(font, room, wet, tilt, compress, level, noise, snr if noise != "none" else 0.0, codec,
                      codec_level if codec != "none" else 0.0)


def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS pink (1/f power) or brown (1/f^2) noise of n samples, shaped in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    spectrum /= np.sqrt(f) if colour == "pink" else f
    noise = np.fft.irfft(spectrum, n)
    return noise / max(float(np.sqrt(np.mean(noise ** 2))), 1e-12)


def codec_round_trip(audio: np.ndarray, sample_rate: int, codec: str, level: float) -> np.ndarray:
    """Encode and decode in memory with libsndfile (MP3 at a constant bit rate, or Ogg Vorbis); the result
    is cut or zero-padded to the input's length (MP3 adds encoder delay and padding)."""
    import soundfile as sf

    buf = io.BytesIO()
    if codec == "mp3":
        sf.write(buf, audio, sample_rate, format="MP3", subtype="MPEG_LAYER_III", compression_level=level,
                 bitrate_mode="CONSTANT")
    else:
        sf.write(buf, audio, sample_rate, format="OGG", subtype="VORBIS", compression_level=level)
    buf.seek(0)
    decoded, _ = sf.read(buf, dtype="float32")
    out = np.zeros_like(audio)
    out[: min(len(out), len(decoded))] = decoded[: len(out)]
    return out


def apply_conditions(audio: np.ndarray, sample_rate: int, c: Conditions, rng: np.random.Generator) -> np.ndarray:
    """The room, mastering, level, noise and codec of ``c`` applied to a dry mono render (the soundfont
    is chosen at rendering). pedalboard (Spotify's, well kept and fast) supplies the effects."""
    from ..._extras import require

    pb = require("pedalboard", "corpus", "randomised recording conditions")

    # JUCE's reverb (inside pedalboard) doubles its dry signal, hence the halved dry level
    chain = [pb.Reverb(room_size=c.reverb_room, wet_level=c.reverb_wet, dry_level=(1.0 - c.reverb_wet / 2) / 2, width=0.0),
             pb.LowShelfFilter(cutoff_frequency_hz=250.0, gain_db=-c.tilt_db / 2),
             pb.HighShelfFilter(cutoff_frequency_hz=3000.0, gain_db=c.tilt_db / 2)]
    if c.compressor_threshold_db < 0:
        chain.append(pb.Compressor(threshold_db=c.compressor_threshold_db, ratio=4.0, attack_ms=5.0, release_ms=100.0))
    # a fast 20:1 compressor as the limiter: pedalboard's Limiter adds makeup gain, which would move the level
    chain += [pb.Gain(gain_db=c.level_db),
              pb.Compressor(threshold_db=-1.0, ratio=20.0, attack_ms=1.0, release_ms=100.0)]
    wet = pb.Pedalboard(chain)(audio.astype(np.float32)[None], sample_rate)[0]
    if c.noise != "none":
        rms = float(np.sqrt(np.mean(wet.astype(np.float64) ** 2)))
        wet = wet + (coloured_noise(len(wet), c.noise, rng) * rms * 10 ** (-c.snr_db / 20)).astype(np.float32)
    if c.codec != "none":
        wet = codec_round_trip(wet, sample_rate, c.codec, c.codec_level)
    return np.clip(wet, -1.0, 1.0).astype(np.float32)
