"""Render the bundled example clip, src/midlevel/data/example.flac.

J. S. Bach, chorale "Christ unser Herr zum Jordan kam" (BWV 66.6), from music21's
bundled corpus (public domain), played on General MIDI piano by FluidSynth with the
FluidR3_GM soundfont (MIT licence). Run from the repository root:

    python scripts/make_example_clip.py

Needs music21, pretty_midi, soundfile, the `fluidsynth` command line and
/usr/share/sounds/sf2/FluidR3_GM.sf2 (Debian packages fluidsynth, fluid-soundfont-gm).
FluidSynth renders 32-bit float so that no dither noise is added, which keeps the
output identical from run to run with the same FluidSynth and soundfont versions.
"""

import pathlib
import subprocess
import tempfile

import music21
import numpy as np
import pretty_midi
import soundfile as sf

PIECE = "bach/bwv66.6"
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
SAMPLE_RATE = 22050
SECONDS = 12.0
FADE_SECONDS = 0.5  # fade out so the cut mid-phrase does not click
PEAK_DBFS = -1.0
OUT = pathlib.Path(__file__).resolve().parents[1] / "src" / "midlevel" / "data" / "example.flac"


def render(workdir: pathlib.Path) -> np.ndarray:
    """Score -> MIDI (all parts on piano) -> FluidSynth -> mono float32 at SAMPLE_RATE."""
    midi_path, wav_path = workdir / "piece.mid", workdir / "piece.wav"
    music21.corpus.parse(PIECE).write("midi", fp=midi_path)
    midi = pretty_midi.PrettyMIDI(str(midi_path))
    for inst in midi.instruments:  # pin the timbre instead of relying on music21's default
        inst.program, inst.is_drum = 0, False
    midi.write(str(midi_path))
    subprocess.run(
        ["fluidsynth", "-ni", "-g", "0.5", "-r", str(SAMPLE_RATE), "-O", "float", "-T", "wav",
         "-F", str(wav_path), SOUNDFONT, str(midi_path)],
        check=True, stdout=subprocess.DEVNULL,
    )
    audio, rate = sf.read(wav_path, dtype="float32", always_2d=True)
    assert rate == SAMPLE_RATE, rate
    return audio.mean(axis=1)


def finish(audio: np.ndarray) -> np.ndarray:
    """Trim to SECONDS, fade out the tail and peak-normalise to PEAK_DBFS."""
    audio = audio[: int(SECONDS * SAMPLE_RATE)].copy()
    fade = int(FADE_SECONDS * SAMPLE_RATE)
    audio[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return audio * np.float32(10 ** (PEAK_DBFS / 20) / np.abs(audio).max())


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        audio = finish(render(pathlib.Path(tmp)))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    sf.write(OUT, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    print(f"wrote {OUT} ({len(audio) / SAMPLE_RATE:.1f} s, {OUT.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
