"""The speakers of the controlled spoken-digit corpus: speech synthesisers from Debian and their voices.

A *speaker* is one synthesiser voice with one variant (``espeak-ng`` accent + voice variant, a ``flite``
voice, a ``festival`` voice). Its sex is the synthesiser's own metadata: the ``gender`` line of an
espeak-ng variant file, and the documented speaker of each flite and festival voice. Held-out speakers in
the corpus's splits are voices never heard in training.

Synthesis runs the command-line programs (no Python bindings are packaged for them) into a temporary
WAV and reads it back; festival also reports each phone's end time, which becomes the reference for the
phone timings of the other synthesisers (``phonetics.align_segments``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import MidlevelError

#: espeak-ng's English accents (``espeak-ng --voices=en``), each spoken by every variant in ``ESPEAK_VARIANTS``
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
#: the human-like numbered variants (the others are effects: robots, whispers, croaks)
ESPEAK_VARIANTS = tuple(f"m{i}" for i in range(1, 9)) + tuple(f"f{i}" for i in range(1, 6))
#: accents whose voice name takes no variant: ``-v en-gb+f2`` speaks espeak-ng 1.51's plain en-gb voice (the
#: variant is silently dropped, so every en-gb "speaker" was one male voice); its voice file ``gmw/en`` takes
#: variants under the name ``en``
ESPEAK_VOICE_NAMES = {"en-gb": "en"}
#: flite's built-in voices and their speakers' sex (CMU ARCTIC / diphone databases: slt is a woman)
FLITE_VOICES = {"kal": "male", "awb": "male", "rms": "male", "slt": "female"}
#: festival voices from Debian (festvox-kallpc16k, festvox-kdlpc16k, festvox-us-slt-hts) and their sex
FESTIVAL_VOICES = {"kal_diphone": "male", "ked_diphone": "male", "cmu_us_slt_arctic_hts": "female"}
DEBIAN_PACKAGES = ("espeak-ng", "flite", "festival", "festvox-kallpc16k", "festvox-kdlpc16k", "festvox-us-slt-hts")


class SynthesisError(MidlevelError, RuntimeError):
    """A synthesiser that is missing or failed; the message says which and how to install it."""


@dataclass(frozen=True)
class Voice:
    engine: str  # "espeak-ng", "flite", "festival"
    name: str  # accent (espeak-ng) or voice name
    variant: str  # espeak-ng variant ("" otherwise)
    sex: str  # "male" or "female"

    @property
    def speaker(self) -> str:
        """The speaker id: engine, voice and variant (a file-name-safe string)."""
        return f"{self.engine}_{self.name}" + (f"_{self.variant}" if self.variant else "")


def _espeak_data() -> Path | None:
    if not shutil.which("espeak-ng"):
        return None
    out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout
    found = re.search(r"Data at:\s*(\S+)", out)
    return Path(found.group(1)) if found else None


def espeak_variant_sex(data: Path, variant: str) -> str | None:
    """The ``gender`` line of an espeak-ng variant file (``male``/``female``), or None."""
    path = data / "voices" / "!v" / variant
    if not path.is_file():
        return None
    found = re.search(r"^\s*gender\s+(male|female)\b", path.read_text(errors="replace"), re.MULTILINE)
    return found.group(1) if found else None


def _festival_voice_installed(name: str) -> bool:
    return any(Path("/usr/share/festival/voices").glob(f"*/{name}"))


def available_voices() -> list[Voice]:
    """Every voice of ``ESPEAK_*``, ``FLITE_VOICES`` and ``FESTIVAL_VOICES`` installed here, in a fixed order."""
    voices: list[Voice] = []
    data = _espeak_data()
    if data is not None:
        for accent in ESPEAK_ACCENTS:
            for variant in ESPEAK_VARIANTS:
                sex = espeak_variant_sex(data, variant)
                if sex is not None:
                    voices.append(Voice("espeak-ng", accent, variant, sex))
    if shutil.which("flite"):
        listed = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout.split()
        voices += [Voice("flite", v, "", sex) for v, sex in FLITE_VOICES.items() if v in listed]
    if shutil.which("festival"):
        voices += [Voice("festival", v, "", sex) for v, sex in FESTIVAL_VOICES.items() if _festival_voice_installed(v)]
    return voices


def _read(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    samples, rate = sf.read(path, dtype="float32", always_2d=True)
    return samples.mean(axis=1), int(rate)


def festival_script(voice: str, word: str, stretch: float, f0_mean: float | None, wav: Path) -> str:
    """A festival program: the voice, its duration stretch and (diphone voices) mean F0, the word
    synthesised, each phone's name and end time printed, the wave saved."""
    pitch = ""
    if f0_mean is not None and voice.endswith("_diphone"):
        pitch = (f"(set! int_lr_params '((target_f0_mean {f0_mean:.1f}) (target_f0_std {0.15 * f0_mean:.1f}) "
                 "(model_f0_mean 170) (model_f0_std 34)))\n")
    return (f"(voice_{voice})\n(Parameter.set 'Duration_Stretch {stretch:.4f})\n{pitch}"
            f"(set! utt (Utterance Text \"{word}\"))\n(utt.synth utt)\n"
            "(mapcar (lambda (s) (format t \"SEG %s %f\\n\" (item.name s) (item.feat s \"end\"))) "
            "(utt.relation.items utt 'Segment))\n"
            f"(utt.save.wave utt \"{wav}\" 'riff)\n")


def synthesize(voice: Voice, word: str, *, rate: float = 1.0, f0_mean: float | None = None
               ) -> tuple[np.ndarray, int, list[tuple[str, float]] | None]:
    """``word`` spoken by ``voice``: (samples, sample rate, festival's phones as (name, end s) or None).

    ``rate``: speaking rate relative to the voice's own (1.2 = 20% faster); ``f0_mean``: the mean pitch in Hz
    (None: the voice's own; ignored by festival's HTS voice)."""
    with tempfile.TemporaryDirectory(prefix="midlevel-say-") as tmp:
        wav = Path(tmp) / "say.wav"
        segments = None
        if voice.engine == "espeak-ng":
            name = ESPEAK_VOICE_NAMES.get(voice.name, voice.name)
            cmd = ["espeak-ng", "-v", f"{name}+{voice.variant}", "-s", str(int(round(175 * rate))), "-w", str(wav)]
            if f0_mean is not None:  # espeak's pitch 0-99 (50: the variant's own); ~1.2% per step near the middle
                cmd += ["-p", str(int(np.clip(round(50 + 40 * np.log2(f0_mean / (120.0 if voice.sex == "male" else 200.0))), 0, 99)))]
            run = subprocess.run([*cmd, word], capture_output=True, text=True)
        elif voice.engine == "flite":
            cmd = ["flite", "-voice", voice.name, "--setf", f"duration_stretch={1.0 / rate:.4f}"]
            if f0_mean is not None:
                cmd += ["--setf", f"int_f0_target_mean={f0_mean:.1f}"]
            run = subprocess.run([*cmd, "-t", word, "-o", str(wav)], capture_output=True, text=True)
        elif voice.engine == "festival":
            script = Path(tmp) / "say.scm"
            script.write_text(festival_script(voice.name, word, 1.0 / rate, f0_mean, wav))
            run = subprocess.run(["festival", "-b", str(script)], capture_output=True, text=True)
            segments = [(parts[1], float(parts[2])) for line in run.stdout.splitlines()
                        if (parts := line.split()) and parts[0] == "SEG" and len(parts) == 3]
        else:
            raise SynthesisError(f"unknown synthesiser {voice.engine!r}")
        if run.returncode != 0 or not wav.is_file() or wav.stat().st_size < 100:
            raise SynthesisError(f"{voice.speaker}: synthesis of {word!r} failed (exit {run.returncode}): "
                                 f"{(run.stderr or run.stdout).strip()[:200]}; install {' '.join(DEBIAN_PACKAGES)}")
        samples, sr = _read(wav)
    return samples, sr, segments
