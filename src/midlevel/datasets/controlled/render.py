"""Rendering: clip -> General MIDI file -> FluidSynth (CLI) with the FluidR3 GM soundfont -> mono audio.

One ``fluidsynth`` process per clip (loading only the samples the clip uses), reverb and chorus off (they would blur articulation and add
detuning of their own), fixed gain, 22050 Hz. The stereo output is averaged to mono and cut to the
clip length with a 10 ms fade-out. Loudness is *not* normalised: the velocity factor must stay
audible. A clip whose peak would exceed full scale is scaled down to just below it and the scale
is recorded (``limiter_gain``); with the default gain this is rare.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ...errors import MidlevelError
from .factors import KIND_DETUNED, KIND_DRUM, KIND_INJECTED, Clip

SAMPLE_RATE = 22050
GAIN = 0.45
SOUNDFONT_CANDIDATES = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
)
INSTALL_HINT = "install them with: apt-get install fluidsynth fluid-soundfont-gm"
AUDIO_FORMATS = {"flac": ("FLAC", "PCM_16"), "wav": ("WAV", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III")}


class RenderDependencyError(MidlevelError, RuntimeError):
    """FluidSynth or the General MIDI soundfont is missing."""


def find_soundfont(soundfont=None) -> Path:
    """The soundfont to use: the argument, $MIDLEVEL_SOUNDFONT, or FluidR3_GM where Debian puts it."""
    candidates = [soundfont] if soundfont else []
    if not soundfont and os.environ.get("MIDLEVEL_SOUNDFONT"):
        candidates.append(os.environ["MIDLEVEL_SOUNDFONT"])
    if not candidates:
        candidates = list(SOUNDFONT_CANDIDATES)
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    raise RenderDependencyError(
        f"General MIDI soundfont not found (looked for {', '.join(str(c) for c in candidates)}); {INSTALL_HINT}"
        " (or pass soundfont=... / set MIDLEVEL_SOUNDFONT)"
    )


def find_fluidsynth() -> str:
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise RenderDependencyError(f"the fluidsynth program is not on PATH; {INSTALL_HINT}")
    return exe


def check_dependencies(soundfont=None) -> tuple[str, Path]:
    """(fluidsynth executable, soundfont path), or one clear RenderDependencyError."""
    return find_fluidsynth(), find_soundfont(soundfont)


def clip_to_midi(clip: Clip):
    """A pretty_midi.PrettyMIDI with one instrument per voice (own channel): score parts, injected
    notes, the detuned melody double (pitch bend), drums on channel 10."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(resolution=960, initial_tempo=120.0)
    horizon = clip.seconds + 0.1
    keys = sorted({(int(k), int(p)) for k, p in zip(clip.kind, clip.part)}, key=lambda x: (x[0] == KIND_DRUM, x[1], x[0]))
    for kind, part in keys:
        m = (clip.kind == kind) & (clip.part == part)
        if kind == KIND_DRUM:
            inst = pretty_midi.Instrument(program=0, is_drum=True, name="drums")
        else:
            prog = int(clip.program[m][0])
            name = {KIND_INJECTED: "injected", KIND_DETUNED: "detuned"}.get(kind, f"part{part}")
            inst = pretty_midi.Instrument(program=prog, name=name)
            if kind == KIND_DETUNED:
                cents = float(clip.cents[m][0])
                inst.pitch_bends.append(pretty_midi.PitchBend(int(np.clip(round(cents / 200.0 * 8192), -8192, 8191)), 0.0))
        on, end, pitch, vel = clip.onset[m], np.minimum(clip.end[m], horizon), clip.pitch[m], clip.velocity[m]
        order = np.lexsort((pitch, on))
        last_by_pitch: dict[int, pretty_midi.Note] = {}
        for i in order:
            s, e = float(on[i]), float(end[i])
            if e <= s:
                continue
            p = int(pitch[i])
            prev = last_by_pitch.get(p)
            if prev is not None and prev.end > s:  # same key re-struck: release the previous first
                prev.end = max(prev.start + 0.005, s - 0.002)
            note = pretty_midi.Note(velocity=int(vel[i]), pitch=p, start=s, end=e)
            inst.notes.append(note)
            last_by_pitch[p] = note
        if inst.notes:
            pm.instruments.append(inst)
    return pm


def render_clip(clip: Clip, *, soundfont=None, sample_rate: int = SAMPLE_RATE, gain: float = GAIN, workdir=None):
    """Render one clip. Returns (mono float32 audio of exactly ``clip.seconds``, info dict)."""
    import soundfile as sf

    exe, sf2 = check_dependencies(soundfont)
    pm = clip_to_midi(clip)
    tmp = tempfile.mkdtemp(prefix="midlevel-render-", dir=workdir)
    try:
        mid, wav = os.path.join(tmp, "clip.mid"), os.path.join(tmp, "clip.wav")
        pm.write(mid)
        cmd = [exe, "-ni", "-q", "-g", f"{gain}", "-r", str(sample_rate), "-R", "0", "-C", "0", "-O", "float",
               "-o", "synth.cpu-cores=1", "-o", "synth.dynamic-sample-loading=1", "-F", wav, str(sf2), mid]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0 or not os.path.exists(wav):
            raise RuntimeError(f"fluidsynth failed (exit {res.returncode}): {res.stderr.strip()[-500:]}")
        audio, sr = sf.read(wav, dtype="float32", always_2d=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if sr != sample_rate:
        raise RuntimeError(f"fluidsynth wrote {sr} Hz, expected {sample_rate}")
    mono = audio.mean(axis=1)
    n = int(round(clip.seconds * sample_rate))
    out = np.zeros(n, dtype=np.float32)
    out[: min(n, len(mono))] = mono[:n]
    fade = min(n, int(0.01 * sample_rate))
    if fade:
        out[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    peak = float(np.max(np.abs(out))) if n else 0.0
    limiter = 1.0
    if peak > 0.999:
        limiter = 0.999 / peak
        out *= np.float32(limiter)
    rms = float(np.sqrt(np.mean(out.astype(np.float64) ** 2))) if n else 0.0
    info = {
        "peak": peak * limiter,
        "rms_dbfs": float(20 * np.log10(max(rms, 1e-10))),
        "limiter_gain": limiter,
    }
    return out, info


def write_audio(path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE, audio_format: str = "flac") -> None:
    """Write mono audio atomically (temporary file in the same folder, then os.replace)."""
    import soundfile as sf

    if audio_format not in AUDIO_FORMATS:
        raise ValueError(f"audio_format must be one of {sorted(AUDIO_FORMATS)}, got {audio_format!r}")
    fmt, subtype = AUDIO_FORMATS[audio_format]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.{audio_format}")
    sf.write(str(tmp), audio, sample_rate, format=fmt, subtype=subtype)
    os.replace(tmp, path)
