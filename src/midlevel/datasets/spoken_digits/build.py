"""Build the controlled spoken-digit corpus: every voice says every digit ``reps`` times.

Per clip (random numbers from ``[seed, speaker index, digit, rep]``, so a clip never depends on which
others were built): a speaking rate (0.8-1.25 of the voice's own) and a mean pitch (men 85-150 Hz, women
160-250 Hz) are drawn; the word is synthesised, resampled to 16 kHz, trimmed of its leading and trailing
silence and placed at a random offset in a 1.2 s clip; the phonetic concepts and their time spans
(``phonetics``) and the speaker concepts (``datasets.speaker_measures``, on this dry clip) are measured; then, unless
``conditions="dry"``, the recording conditions of the music corpus are applied (room, microphone EQ tilt,
compression, level over 36 dB, noise at 20-45 dB SNR, MP3/Ogg round trips; ``controlled.conditions``;
the soundfont draw is unused). None of them changes a label: the words, their phones and their timing
are what was said, and the speaker concepts were measured before.

Layout (like AudioMNIST's, so the same loader code reads both): ``audio/<speaker>/<digit>_<speaker>_<rep>.wav``,
``labels.csv`` (one row per clip: ids, split, draws, concepts, spans, conditions), ``speakers.csv`` and
``build.json`` (settings). Splits are by speaker, stratified by synthesiser and sex: held-out voices were
never heard in training. Resumable: each clip's row is written beside its audio (atomically) and a rerun
skips what exists.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ...ioutil import atomic_path, atomic_write_text
from ..controlled.conditions import apply_conditions, sample_conditions
from ..speaker_measures import speaker_measures
from .phonetics import (DIGIT_WORDS, PHONE_CLASSES, align_segments, class_spans, lexicon_phones, phonetic_labels,
                        with_starts)
from .voices import Voice, available_voices, synthesize

SAMPLE_RATE = 16000
CLIP_SECONDS = 1.2
RATE = (0.8, 1.25)
F0_MEAN = {"male": (85.0, 150.0), "female": (160.0, 250.0)}
SILENCE_DB = -40.0  # trimming: below this (re the word's peak) is silence
REFERENCE_VOICE = Voice("festival", "kal_diphone", "", "male")  # phone times for alignment
SPLITS = {"train": 0.7, "val": 0.15, "test": 0.15}


def speaker_splits(voices: list[Voice], seed: int) -> dict[str, str]:
    """speaker -> split; within each (synthesiser, sex) group speakers are shuffled and cut by ``SPLITS``, so
    every split hears every synthesiser and both sexes where the group is large enough."""
    rng = np.random.default_rng([seed, 7])
    out: dict[str, str] = {}
    groups: dict[tuple[str, str], list[str]] = {}
    for v in voices:
        groups.setdefault((v.engine, v.sex), []).append(v.speaker)
    for key in sorted(groups):
        names = [groups[key][i] for i in rng.permutation(len(groups[key]))]
        n_val = int(round(len(names) * SPLITS["val"]))
        n_test = int(round(len(names) * SPLITS["test"]))
        for i, name in enumerate(names):
            out[name] = "val" if i < n_val else "test" if i < n_val + n_test else "train"
    return out


def _resample(x: np.ndarray, sr: int) -> np.ndarray:
    import soxr

    return x if sr == SAMPLE_RATE else soxr.resample(x, sr, SAMPLE_RATE).astype(np.float32)


def _trim(x: np.ndarray) -> tuple[int, int]:
    """(first, last + 1) sample above ``SILENCE_DB`` of the peak, in 10 ms frames."""
    frame = SAMPLE_RATE // 100
    n = len(x) // frame
    energy = (x[: n * frame].reshape(n, frame) ** 2).mean(axis=1)
    loud = np.flatnonzero(10 * np.log10(energy + 1e-20) > 10 * np.log10(energy.max() + 1e-20) + SILENCE_DB)
    return (int(loud[0]) * frame, int(loud[-1] + 1) * frame) if len(loud) else (0, len(x))


_REFERENCES: dict[str, tuple[np.ndarray, list]] = {}


def _reference(word: str) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    if word not in _REFERENCES:
        samples, sr, ends = synthesize(REFERENCE_VOICE, word)
        _REFERENCES[word] = (_resample(samples, sr), with_starts(ends))
    return _REFERENCES[word]


def make_clip(voice: Voice, digit: int, rep: int, speaker_index: int, seed: int, dry: bool
              ) -> tuple[np.ndarray, dict[str, Any]]:
    """One clip's audio (16 kHz, ``CLIP_SECONDS``) and its label row."""
    rng = np.random.default_rng([seed, speaker_index, digit, rep])
    word = DIGIT_WORDS[digit]
    rate, f0 = float(rng.uniform(*RATE)), float(rng.uniform(*F0_MEAN[voice.sex]))
    samples, sr, ends = synthesize(voice, word, rate=rate, f0_mean=f0)
    samples = _resample(samples, sr)
    if ends is not None:
        segments = with_starts(ends)
    else:
        reference, ref_segments = _reference(word)
        segments = align_segments(samples, SAMPLE_RATE, reference, SAMPLE_RATE, ref_segments)
    first, last = _trim(samples)
    word_audio = samples[first:last]
    length = int(CLIP_SECONDS * SAMPLE_RATE)
    truncated = len(word_audio) > length
    word_audio = word_audio[:length]
    offset = int(rng.integers(0, length - len(word_audio) + 1))
    clip = np.zeros(length, np.float32)
    clip[offset:offset + len(word_audio)] = word_audio
    clip *= 0.5 / max(float(np.abs(clip).max()), 1e-9)  # -6 dBFS peak before the conditions' level
    shift = (offset - first) / SAMPLE_RATE
    spans = class_spans([(p, s + shift, e + shift) for p, s, e in segments])
    row: dict[str, Any] = {
        "file": f"audio/{voice.speaker}/{digit}_{voice.speaker}_{rep}.wav", "digit": digit, "word": word,
        "speaker": voice.speaker, "engine": voice.engine, "voice": voice.name, "variant": voice.variant,
        "sex": voice.sex, "rep": rep, "rate": rate, "f0_target_hz": f0, "offset_s": offset / SAMPLE_RATE,
        "word_s": len(word_audio) / SAMPLE_RATE, "truncated": truncated,
        "phones": " ".join(p for p, _, _ in segments if p != "pau"),
        **phonetic_labels(lexicon_phones(word)), **speaker_measures(clip, SAMPLE_RATE),
    }
    for name in PHONE_CLASSES:
        lo, hi = spans.get(name, (float("nan"), float("nan")))
        row[f"{name}_start_s"], row[f"{name}_end_s"] = lo, hi
    conditions = sample_conditions(np.random.default_rng([seed, speaker_index, digit, rep, 3]), soundfonts={"none": ""})
    if not dry:
        clip = apply_conditions(clip, SAMPLE_RATE, conditions, np.random.default_rng([seed, speaker_index, digit, rep, 4]))
    row.update({f"cond_{k}": v for k, v in asdict(conditions).items() if k != "soundfont"} if not dry else {})
    return clip, row


def _build_one(job: tuple) -> str:
    import soundfile as sf

    out, voice, digit, rep, index, seed, dry = job
    row_file = Path(out) / "rows" / voice.speaker / f"{digit}_{rep}.json"
    if row_file.is_file():
        return "skipped"
    clip, row = make_clip(voice, digit, rep, index, seed, dry)
    wav = Path(out) / row["file"]
    wav.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(wav) as tmp:
        sf.write(tmp, clip, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    row_file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(row_file, json.dumps(row))
    return "built"


def build_spoken_digits(out: str | Path, *, reps: int = 5, seed: int = 0, conditions: str = "randomised",
                        workers: int = 1, voices: list[Voice] | None = None, progress: bool = True) -> dict[str, Any]:
    """Build (or finish building) the corpus in ``out``; returns a summary. ``voices``: a subset (default: every
    installed voice of ``voices.available_voices``)."""
    import pandas as pd
    from tqdm.auto import tqdm

    if conditions not in ("dry", "randomised"):
        raise ValueError(f"conditions must be 'dry' or 'randomised'; got {conditions!r}")
    out = Path(out)
    every = available_voices()
    voices = every if voices is None else voices
    if not voices:
        raise RuntimeError("no speech synthesiser found; apt-get install espeak-ng flite festival festvox-kallpc16k")
    settings = {"reps": reps, "seed": seed, "conditions": conditions, "sample_rate": SAMPLE_RATE,
                "clip_seconds": CLIP_SECONDS, "speakers": [v.speaker for v in voices]}
    build_file = out / "build.json"
    if build_file.is_file() and json.loads(build_file.read_text()) != settings:
        raise ValueError(f"{build_file}: was built with other settings; use a new --out folder")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(build_file, json.dumps(settings, indent=1) + "\n")
    index = {v.speaker: i for i, v in enumerate(every)}  # a speaker's random numbers do not depend on the subset
    jobs = [(str(out), v, d, r, index.get(v.speaker, 10_000 + k), seed, conditions == "dry")
            for k, v in enumerate(voices) for d in range(len(DIGIT_WORDS)) for r in range(reps)]
    started = time.perf_counter()
    if workers > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            done = list(tqdm(pool.imap_unordered(_build_one, jobs, chunksize=4), total=len(jobs), disable=not progress,
                             desc="spoken digits"))
    else:
        done = [_build_one(j) for j in tqdm(jobs, disable=not progress, desc="spoken digits")]
    splits = speaker_splits(voices, seed)
    rows = [json.loads((out / "rows" / v.speaker / f"{d}_{r}.json").read_text())
            for v in voices for d in range(len(DIGIT_WORDS)) for r in range(reps)]
    labels = pd.DataFrame(rows)
    labels.insert(1, "split", labels["speaker"].map(splits))
    with atomic_path(out / "labels.csv") as tmp:
        labels.to_csv(tmp, index=False)
    speakers = pd.DataFrame([{**asdict(v), "speaker": v.speaker, "split": splits[v.speaker]} for v in voices])
    with atomic_path(out / "speakers.csv") as tmp:
        speakers.to_csv(tmp, index=False)
    return {"out": str(out), "clips": len(rows), "built": done.count("built"), "skipped": done.count("skipped"),
            "speakers": len(voices), "female_speakers": int((speakers["sex"] == "female").sum()),
            "split_speakers": speakers["split"].value_counts().to_dict(), "seconds": time.perf_counter() - started}
