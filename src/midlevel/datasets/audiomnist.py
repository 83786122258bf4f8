"""Reader for AudioMNIST (Becker et al. 2018; github.com/soerenab/AudioMNIST): spoken digits.

Layout under a root folder (the clone; docs/datasets.md has the details)::

    data/audioMNIST_meta.txt        JSON keyed by speaker "01".."60": accent, age, gender, native speaker, ...
    data/NN/D_NN_R.wav              digit D (0-9), speaker NN, repetition R; 48 kHz mono

60 speakers x 10 digits x 50 repetitions = 30,000 clips; 12 speakers are female. Splits are always
speaker-disjoint: a model must not score by recognising a voice it was trained on.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..audio import AudioError, load_audio
from ..errors import MidlevelError, refuse
from .checks import SPLIT_NAMES, audio_problem, check_fractions, listing, refuse_listed
from .errors import DatasetError, read_text

SAMPLE_RATE = 48000
"""The rate every AudioMNIST recording has; any other is refused."""
META_FILE = "audioMNIST_meta.txt"
TASKS = ("digit", "sex")
FOLDS = {"digit": 5, "sex": 4}
"""Becker et al.'s folds: 5 groups of 12 speakers (digits), 4 groups of 6 (sex, on 12 female + 12 male)."""

BECKER_GROUPS: dict[str, tuple[tuple[int, ...], ...]] = {
    "digit": (
        (12, 47, 59, 15, 27, 41, 4, 11, 21, 31, 44, 50),
        (26, 52, 60, 18, 32, 42, 5, 13, 22, 33, 45, 51),
        (28, 56, 7, 19, 35, 1, 6, 16, 23, 34, 46, 53),
        (36, 57, 9, 24, 37, 2, 8, 17, 29, 39, 48, 54),
        (43, 58, 14, 25, 38, 3, 10, 20, 30, 40, 49, 55),
    ),
    "sex": (
        (43, 28, 52, 48, 53, 41),
        (58, 59, 60, 7, 23, 38),
        (36, 47, 56, 2, 44, 50),
        (26, 12, 57, 25, 37, 45),
    ),
}
"""The speaker groups of the published splits (audiomnist/train/splits.py of the repository), ordered so
that fold k validates on group k and tests on group k+1 (mod the number of groups), as those splits do."""

BECKER_RATE = 8000
BECKER_LENGTH = 8000
_GENDERS = {"male": "male", "m": "male", "man": "male", "female": "female", "f": "female", "woman": "female"}
_YES_NO = {"yes": True, "y": True, "true": True, "no": False, "n": False, "false": False}
_CLIP_NAME = re.compile(r"(\d+)_(\d+)_(\d+)\.wav", re.IGNORECASE)
_AGE_RANGE = (1, 120)


@dataclass(frozen=True)
class AudioMNISTSpeaker:
    """One speaker's metadata, normalised; ``raw`` is the meta entry as written."""

    number: int
    gender: str  # "female" or "male"
    age: int | None  # None when missing, not a whole number, or implausible (the published file has "1234")
    accent: str | None
    native_speaker: bool | None
    origin: str | None
    recording_date: str | None
    recording_room: str | None
    raw: dict = field(compare=False, repr=False)


@dataclass(frozen=True)
class AudioMNISTClip:
    """One recording: ``id`` is the file name without ``.wav`` (``0_01_0``)."""

    id: str
    path: Path
    digit: int
    speaker: int
    repetition: int
    frames: int | None  # at 48 kHz, from the file's header; None when loaded with check_audio=False

    @property
    def duration(self) -> float | None:
        return None if self.frames is None else self.frames / SAMPLE_RATE


@dataclass
class AudioMNISTDataset:
    """Every clip found, its speakers' metadata, and the split chosen at loading (``split`` makes others)."""

    root: Path
    clips: list[AudioMNISTClip]
    speakers: dict[int, AudioMNISTSpeaker]  # speakers with recordings
    speakers_without_audio: list[int]  # in the meta file but without a folder (a partial copy)
    task: str
    splits: dict[str, list[str]]  # clip ids per split (for task "sex": only the balanced subset's clips)
    speaker_splits: dict[str, list[int]]
    _by_id: dict[str, AudioMNISTClip] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.clips)

    def clip(self, clip_id: str) -> AudioMNISTClip:
        if len(self._by_id) != len(self.clips):
            self._by_id = {c.id: c for c in self.clips}
        if clip_id not in self._by_id:
            raise KeyError(f"no AudioMNIST clip {clip_id!r}")
        return self._by_id[clip_id]

    def target(self, clip: AudioMNISTClip, task: str | None = None):
        """What the task predicts: the digit (int) or the speaker's gender ("female"/"male")."""
        return clip.digit if (task or self.task) == "digit" else self.speakers[clip.speaker].gender

    def frame(self) -> pd.DataFrame:
        """One row per clip, indexed by id: path, digit, speaker, repetition, frames, the speaker's
        metadata, and the split of the loaded task (None for clips outside it)."""
        split_of = {i: name for name, ids in self.splits.items() for i in ids}
        rows = []
        for c in self.clips:
            s = self.speakers[c.speaker]
            rows.append({"id": c.id, "path": c.path, "digit": c.digit, "speaker": c.speaker,
                         "repetition": c.repetition, "frames": c.frames, "gender": s.gender, "age": s.age,
                         "accent": s.accent, "native_speaker": s.native_speaker,
                         "recording_room": s.recording_room, "split": split_of.get(c.id)})
        return pd.DataFrame(rows).set_index("id")

    def split(self, *, task: str | None = None, split_seed: int = 0,
              fractions: Sequence[float] = (0.6, 0.2, 0.2), fold: int | None = None,
              groups: str = "seeded") -> tuple[dict[str, list[str]], dict[str, list[int]]]:
        """(clip ids, speaker numbers) per split; see ``load_audiomnist``. Reads nothing."""
        task = self.task if task is None else task
        speakers = split_speakers({n: s.gender for n, s in self.speakers.items()}, task=task,
                                  split_seed=split_seed, fractions=fractions, fold=fold, groups=groups,
                                  root=self.root)
        where = {n: name for name, numbers in speakers.items() for n in numbers}
        clips: dict[str, list[str]] = {name: [] for name in SPLIT_NAMES}
        for c in self.clips:
            if c.speaker in where:
                clips[where[c.speaker]].append(c.id)
        return clips, speakers


def load_audiomnist(root, *, task: str = "digit", split_seed: int = 0,
                    fractions: Sequence[float] = (0.6, 0.2, 0.2), fold: int | None = None,
                    groups: str = "seeded", check_audio: bool = True) -> AudioMNISTDataset:
    """Read the clone under ``root`` (the folder holding ``data/``), check it, and split its speakers.

    ``task``: ``"digit"`` (every speaker) or ``"sex"`` (all female speakers and as many male ones, drawn
    with ``split_seed``, as Becker et al. balanced 12 with 12). Splits are speaker-disjoint and
    sex-stratified. ``fold=None``: speakers are cut into train/val/test by ``fractions``. ``fold=k``: the
    paper's rotation, speakers dealt into 5 groups (digit) or 4 (sex); fold k validates on group k, tests
    on group k+1 and trains on the rest; ``groups="published"`` takes the paper's own groups instead of
    seeded ones. ``check_audio`` reads every wav's header (readable, not empty, 48 kHz).

    Every problem found is refused at once (``Refusals`` when there are several; each names its file).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(root, "dataset folder not found")
    data = root / "data"
    if not data.is_dir():
        raise DatasetError(data, "folder not found (the AudioMNIST clone holds data/NN/D_NN_R.wav and "
                           f"data/{META_FILE}; pass the folder that holds data/)")
    problems: list[MidlevelError] = []
    try:
        speakers = read_audiomnist_meta(data / META_FILE)
    except MidlevelError as exc:
        problems.append(exc)
        speakers = None
    clips: list[AudioMNISTClip] = []
    folders: list[int] = []
    for entry in sorted(data.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        if not entry.name.isdigit():
            problems.append(DatasetError(entry, "not a speaker folder (AudioMNIST's are named by speaker: 01 ... 60)"))
            continue
        number = int(entry.name)
        if number in folders:
            problems.append(DatasetError(entry, f"a second folder for speaker {number} (also {number:02d})"))
            continue
        folders.append(number)
        if speakers is not None and number not in speakers:
            problems.append(DatasetError(entry, f"speaker {entry.name} has no entry in {data / META_FILE}"))
        clips += _read_speaker_folder(entry, number, check_audio, problems)
    if not folders and not problems:
        problems.append(DatasetError(data, "no speaker folders (data/01 ... data/60)"))
    refuse_listed(problems)
    clips.sort(key=lambda c: (c.speaker, c.digit, c.repetition))
    present = sorted(set(folders))
    dataset = AudioMNISTDataset(root, clips, {n: speakers[n] for n in present},
                                sorted(set(speakers) - set(present)), task, {}, {})
    dataset.splits, dataset.speaker_splits = dataset.split(split_seed=split_seed, fractions=fractions,
                                                           fold=fold, groups=groups)
    return dataset


def _read_speaker_folder(folder: Path, number: int, check_audio: bool,
                         problems: list[MidlevelError]) -> list[AudioMNISTClip]:
    clips: list[AudioMNISTClip] = []
    seen: dict[tuple[int, int], Path] = {}
    wavs = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".wav" and not p.name.startswith("."))
    if not wavs:
        problems.append(DatasetError(folder, "no recordings (.wav files) in this speaker folder"))
    for path in wavs:
        match = _CLIP_NAME.fullmatch(path.name)
        if match is None:
            problems.append(DatasetError(path, "name is not digit_speaker_repetition.wav (e.g. 0_01_0.wav)"))
            continue
        digit, speaker, repetition = (int(g) for g in match.groups())
        if not 0 <= digit <= 9:
            problems.append(DatasetError(path, f"digit {match.group(1)} is outside 0-9"))
            continue
        if speaker != number:
            problems.append(DatasetError(path, f"speaker {match.group(2)} in the name, but the file is in "
                                         f"speaker folder {folder.name}"))
            continue
        if (digit, repetition) in seen:
            problems.append(DatasetError(path, f"digit {digit}, repetition {repetition} again "
                                         f"(also {seen[digit, repetition].name})"))
            continue
        seen[digit, repetition] = path
        frames = None
        if check_audio:
            frames, problem = audio_problem(path, SAMPLE_RATE, "AudioMNIST is recorded at")
            if problem is not None:
                problems.append(problem)
                continue
        clips.append(AudioMNISTClip(path.stem, path, digit, speaker, repetition, frames))
    return clips


def read_audiomnist_meta(path) -> dict[int, AudioMNISTSpeaker]:
    """The meta file's speakers by number. Refused: a missing or unreadable file, invalid JSON (line
    and column as json reports them), anything but an object of objects, a key that is not a speaker
    number, a speaker listed twice, a missing or unknown gender. Other fields are optional."""
    path = Path(path)
    text = read_text(path, "file not found (AudioMNIST's speaker metadata, JSON keyed by speaker number)")
    try:
        parsed = json.loads(text, object_pairs_hook=_Pairs)
    except json.JSONDecodeError as exc:
        raise DatasetError(path, f"not valid JSON: {exc.msg} (column {exc.colno})", line=exc.lineno) from None
    if not isinstance(parsed, _Pairs):
        raise DatasetError(path, f"expected a JSON object keyed by speaker number, found {_json_kind(parsed)}")
    lines = _entry_lines(text)
    occurrence: dict[str, int] = {}
    problems: list[MidlevelError] = []
    speakers: dict[int, AudioMNISTSpeaker] = {}
    first: dict[int, str] = {}
    for key, entry in parsed:
        k = occurrence[key] = occurrence.get(key, -1) + 1
        line = lines.get(key, [])[k] if k < len(lines.get(key, [])) else None

        def bad(problem: str) -> None:
            problems.append(DatasetError(path, f"speaker {key!r}: {problem}", line=line))

        if not key.strip().isdigit():
            bad("the key is not a speaker number")
            continue
        number = int(key)
        if number in first:
            bad(f"listed twice (also as {first[number]!r})" if first[number] != key else "listed twice")
            continue
        first[number] = key
        if not isinstance(entry, _Pairs):
            bad(f"expected an object of fields, found {_json_kind(entry)}")
            continue
        names = [name for name, _ in entry]
        normalised = [_field_name(n) for n in names]
        twice = sorted({n for n, m in zip(names, normalised) if normalised.count(m) > 1})
        if twice:
            bad(f"field(s) {twice} given twice")
            continue
        fields = {_field_name(name): value for name, value in entry}
        raw = {name: _plain(value) for name, value in entry}
        if "gender" not in fields:
            bad(f"no 'gender' field (found {names})")
            continue
        gender = _GENDERS.get(re.sub(r"\s+", "", str(fields["gender"])).casefold())
        if gender is None:
            bad(f"gender {fields['gender']!r} is neither male nor female")
            continue
        speakers[number] = AudioMNISTSpeaker(
            number, gender, _age(fields.get("age")), _text(fields.get("accent")),
            _YES_NO.get(str(fields.get("nativespeaker", "")).strip().casefold()), _text(fields.get("origin")),
            _text(fields.get("recordingdate")), _text(fields.get("recordingroom")), raw)
    refuse(problems)
    return speakers


class _Pairs(list):
    """A JSON object as json's ``object_pairs_hook`` gives it: (name, value) pairs, repeats kept."""


def _json_kind(value) -> str:
    if isinstance(value, _Pairs):
        return "an object"
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def _plain(value):
    """A parsed value as plain JSON data (objects as dicts, the last of repeated names winning)."""
    if isinstance(value, _Pairs):
        return {k: _plain(v) for k, v in value}
    return [_plain(v) for v in value] if isinstance(value, list) else value


def _entry_lines(text: str) -> dict[str, list[int]]:
    """Line numbers of each ``"key": {`` in the text, in order: where a speaker's entry starts."""
    found: dict[str, list[int]] = {}
    for m in re.finditer(r'"((?:[^"\\]|\\.)*)"\s*:\s*\{', text):
        found.setdefault(m.group(1), []).append(text.count("\n", 0, m.start()) + 1)
    return found


def _field_name(name: str) -> str:
    """'native speaker', 'Native_Speaker' -> 'nativespeaker'; 'recordingdate', 'Recording Date' -> 'recordingdate'."""
    return re.sub(r"[\W_]+", "", name.casefold())


def _text(value) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _age(value) -> int | None:
    """30, "30", " 30 ", 30.0 -> 30; missing, not a whole number, or outside 1-120 -> None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value.isdigit():
            return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or not number.is_integer():
        return None
    age = int(number)
    return age if _AGE_RANGE[0] <= age <= _AGE_RANGE[1] else None


# ---- splits --------------------------------------------------------------------------------------


def split_sizes(n: int, fractions: Sequence[float]) -> list[int]:
    """``n`` items shared by ``fractions`` (largest remainder, ties to the earlier split), every split with a
    non-zero fraction getting at least one item while there are enough."""
    exact = [round(f * n, 9) for f in fractions]  # 0.6 / 0.8 * 14 is 10.5, not 10.4999...
    sizes = [math.floor(e) for e in exact]
    for k in sorted(range(len(sizes)), key=lambda k: (-(exact[k] - sizes[k]), k))[: n - sum(sizes)]:
        sizes[k] += 1
    for k, f in enumerate(fractions):  # an empty split with a share takes one from the largest
        if f > 0 and sizes[k] == 0 and max(sizes) > 1:
            sizes[sizes.index(max(sizes))] -= 1
            sizes[k] += 1
    return sizes


def split_speakers(genders: dict[int, str], *, task: str = "digit", split_seed: int = 0,
                   fractions: Sequence[float] = (0.6, 0.2, 0.2), fold: int | None = None,
                   groups: str = "seeded", root=".") -> dict[str, list[int]]:
    """Speaker numbers per split (docs/datasets.md, "AudioMNIST"): speaker-disjoint, sex-stratified,
    deterministic from ``split_seed``; for task "sex" only a balanced subset takes part."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
    if groups not in ("seeded", "published"):
        raise ValueError(f"groups must be 'seeded' or 'published', got {groups!r}")
    if groups == "published" and fold is None:
        raise ValueError("groups='published' names the paper's fold groups; give a fold too")
    rng = np.random.default_rng(split_seed)
    by_sex = {sex: [n for n in sorted(genders) if genders[n] == sex] for sex in ("female", "male")}
    if task == "sex" and groups == "seeded":
        keep = min(len(v) for v in by_sex.values())  # balance to the smaller side, drawn with the seed
        by_sex = {sex: sorted(rng.choice(v, size=keep, replace=False).tolist()) for sex, v in by_sex.items()}
    shuffled = {sex: [v[i] for i in rng.permutation(len(v))] for sex, v in by_sex.items()}
    if fold is None:
        fractions = check_fractions(fractions)
        order = _interleave(shuffled["female"], shuffled["male"])
        needed = sum(f > 0 for f in fractions)
        if len(order) < needed:
            raise DatasetError(root, f"only {len(order)} speaker(s) to split {needed} ways; need one per split")
        sizes = split_sizes(len(order), fractions)
        bounds = np.cumsum([0, *sizes])
        return {name: sorted(order[bounds[k]:bounds[k + 1]]) for k, name in enumerate(SPLIT_NAMES)}
    n_groups = FOLDS[task]
    if not isinstance(fold, (int, np.integer)) or isinstance(fold, bool) or not 0 <= fold < n_groups:
        raise ValueError(f"fold must be 0 ... {n_groups - 1} for task {task!r} ({n_groups} folds), got {fold!r}")
    if groups == "published":
        dealt = [list(g) for g in BECKER_GROUPS[task]]
        absent = sorted(n for g in dealt for n in g if n not in genders)
        if absent:
            raise DatasetError(root, f"the published {task} folds need speaker(s) {listing(absent)}, which have "
                               "no folder here")
    else:
        total = len(shuffled["female"]) + len(shuffled["male"])
        if total < n_groups:
            raise DatasetError(root, f"only {total} speaker(s) for {n_groups} fold groups; need one per group")
        dealt = [[] for _ in range(n_groups)]
        for position, number in enumerate(shuffled["female"] + shuffled["male"]):  # women first, round-robin
            dealt[position % n_groups].append(number)
    val, test = fold, (fold + 1) % n_groups
    return {"train": sorted(n for g, members in enumerate(dealt) if g not in (val, test) for n in members),
            "val": sorted(dealt[val]), "test": sorted(dealt[test])}


def _interleave(first: list[int], second: list[int]) -> list[int]:
    """Both lists merged keeping each one's order, each item placed at the middle of its share of the line
    ((k + 0.5) / n), so that cutting the result into consecutive pieces stratifies them."""
    keyed = [((k + 0.5) / len(items), side, k) for side, items in enumerate((first, second)) for k in range(len(items))]
    return [(first, second)[side][k] for _, side, k in sorted(keyed)]


# ---- Becker et al.'s input ------------------------------------------------------------------------


def becker_preprocess(samples, rng: np.random.Generator, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Becker et al.'s input: ``samples`` (an array, as ``load_audio`` takes them) resampled to 8 kHz
    and zero-padded to 8000 samples (1 s) at an offset drawn from ``rng``, uniform over 0 ... 7999 - n as
    in the published preprocessing (n: the resampled length). Resampling is ``load_audio``'s (soxr HQ),
    where the paper used librosa's "scipy" resampler on unscaled int16 values; float32 out, in [-1, 1].
    Reads no file. A clip longer than 1 s at 8 kHz is refused (the published code refuses it too)."""
    audio = load_audio(samples, BECKER_RATE, source_sample_rate=sample_rate, name="AudioMNIST clip")
    x = audio.samples
    n = len(x)
    if n > BECKER_LENGTH:
        raise AudioError(f"AudioMNIST clip: {n} samples at {BECKER_RATE} Hz ({n / BECKER_RATE:.2f} s) do not fit "
                         f"the {BECKER_LENGTH}-sample input")
    out = np.zeros(BECKER_LENGTH, dtype=np.float32)
    offset = int(rng.integers(0, BECKER_LENGTH - n)) if n < BECKER_LENGTH else 0
    out[offset:offset + n] = x
    return out
