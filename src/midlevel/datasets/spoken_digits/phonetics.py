"""Phonetic concepts of a spoken digit, and when each is heard.

A digit's phones come from the synthesisers' own pronouncing lexicon (CMUdict, through ``flite -ps``, the
same lexicon festival uses); each phone belongs to one class a listener can check by ear:

| concept | phones (ARPAbet) | heard as |
|---|---|---|
| ``sibilant`` | s z sh zh ch jh | hiss |
| ``fricative`` | f v th dh hh | other friction |
| ``nasal`` | m n ng | hum through the nose |
| ``plosive`` | p b t d k g | a burst |
| ``liquid_glide`` | l r w y | r/l/w/y |
| ``vowel_front`` | iy ih eh ey ae | "ee", "i", "e", "ay" |
| ``vowel_back`` | uw uh ow ao oy | "oo", "oh", "aw" |
| ``vowel_open`` | aa ay aw ah ax er | "ah", "eye", "uh" |

plus ``syllables`` (the number of vowels). Each class's label is 1 when the word has such a phone, else 0,
and its time span is from the first such phone's start to the last one's end. Festival reports phone end
times for its own voices; the other synthesisers' clips are aligned to a festival rendering of the same
word by dynamic time warping of MFCCs (``align_segments``), which maps each reference phone boundary to
the clip.
"""

from __future__ import annotations

import subprocess
from functools import lru_cache

import numpy as np

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PHONE_CLASSES = {
    "sibilant": ("s", "z", "sh", "zh", "ch", "jh"),
    "fricative": ("f", "v", "th", "dh", "hh"),
    "nasal": ("m", "n", "ng"),
    "plosive": ("p", "b", "t", "d", "k", "g"),
    "liquid_glide": ("l", "r", "w", "y"),
    "vowel_front": ("iy", "ih", "eh", "ey", "ae"),
    "vowel_back": ("uw", "uh", "ow", "ao", "oy"),
    "vowel_open": ("aa", "ay", "aw", "ah", "ax", "er"),
}
VOWELS = frozenset(PHONE_CLASSES["vowel_front"] + PHONE_CLASSES["vowel_back"] + PHONE_CLASSES["vowel_open"])
PHONETIC_CONCEPTS = (*PHONE_CLASSES, "syllables")


def phone_class(phone: str) -> str | None:
    base = phone.rstrip("012")
    return next((name for name, members in PHONE_CLASSES.items() if base in members), None)


@lru_cache(maxsize=None)
def lexicon_phones(word: str) -> tuple[str, ...]:
    """The word's phones as the synthesisers' lexicon gives them (``flite -ps``), pauses dropped."""
    out = subprocess.run(["flite", "-ps", "-t", word, "none"], capture_output=True, text=True, check=True).stdout
    return tuple(p for p in out.split() if p != "pau")


def phonetic_labels(phones: tuple[str, ...] | list[str]) -> dict[str, float]:
    """Presence (0/1) of each phone class, and the number of syllables."""
    classes = {phone_class(p) for p in phones}
    labels = {name: float(name in classes) for name in PHONE_CLASSES}
    labels["syllables"] = float(sum(p.rstrip("012") in VOWELS for p in phones))
    return labels


def class_spans(segments: list[tuple[str, float, float]]) -> dict[str, tuple[float, float]]:
    """(start, end) seconds of each phone class present in ``segments`` ((phone, start, end), pauses allowed)."""
    spans: dict[str, tuple[float, float]] = {}
    for phone, start, end in segments:
        name = phone_class(phone)
        if name is not None:
            lo, hi = spans.get(name, (start, end))
            spans[name] = (min(lo, start), max(hi, end))
    return spans


def with_starts(ends: list[tuple[str, float]]) -> list[tuple[str, float, float]]:
    """Festival's (phone, end) list -> (phone, start, end)."""
    out, start = [], 0.0
    for phone, end in ends:
        out.append((phone, start, end))
        start = end
    return out


def _mfcc(samples: np.ndarray, sr: int, hop_s: float) -> np.ndarray:
    import librosa

    hop = int(round(hop_s * sr))
    feats = librosa.feature.mfcc(y=samples.astype(np.float32), sr=sr, n_mfcc=20, n_fft=4 * hop, hop_length=hop)
    feats = feats[1:]  # without the level term: voices differ in gain
    return (feats - feats.mean(axis=1, keepdims=True)) / (feats.std(axis=1, keepdims=True) + 1e-6)


def align_segments(samples: np.ndarray, sr: int, reference: np.ndarray, ref_sr: int,
                   ref_segments: list[tuple[str, float, float]], hop_s: float = 0.01
                   ) -> list[tuple[str, float, float]]:
    """``ref_segments`` (phone, start, end in the reference) mapped onto ``samples`` by DTW of MFCCs."""
    import librosa

    a, b = _mfcc(reference, ref_sr, hop_s), _mfcc(samples, sr, hop_s)
    _, path = librosa.sequence.dtw(X=a, Y=b, metric="cosine")
    path = path[::-1]  # (reference frame, clip frame), increasing
    ref_frames, clip_frames = path[:, 0], path[:, 1]

    def mapped(t: float) -> float:
        frame = min(int(round(t / hop_s)), int(ref_frames[-1]))
        hits = clip_frames[ref_frames == frame]
        return float(np.median(hits) * hop_s) if len(hits) else t

    return [(phone, mapped(start), mapped(end)) for phone, start, end in ref_segments]
