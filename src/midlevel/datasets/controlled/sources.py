"""Source material: scores from music21's bundled corpus, reduced to note lists.

A *piece* is one score of the corpus (a file, or one tune of a multi-tune ABC file). It is parsed
once with music21 and reduced to plain arrays (per part: onset, duration, MIDI pitch in quarter
lengths) plus its measure grid; the reduction is cached on disk as gzipped JSON under
``<cache_dir>/music21-<version>/`` so a corpus build parses each piece at most once, and a resumed
or repeated build reads the cache. JSON floats round-trip exactly, so a cached piece is the same
piece.

The catalogue of pieces is a fixed, sorted list derived from the corpus files shipped with the
installed music21 version; pieces are grouped into five style groups that are sampled with fixed
weights (``STYLE_GROUPS``), so that the large collections (Palestrina, Irish folk tunes) do not
swamp the rest.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ...errors import MidlevelError

# style group -> (weight, corpus top-level folders)
STYLE_GROUPS: dict[str, tuple[float, tuple[str, ...]]] = {
    "chorale": (0.25, ("bach",)),
    "renaissance": (0.15, ("palestrina", "monteverdi", "josquin", "trecento", "ciconia", "luca", "lusitano")),
    "folk": (0.25, ("ryansMammoth", "essenFolksong", "oneills1850", "airdsAirs", "miscFolk", "nottingham-dataset")),
    "classical": (0.20, ("beethoven", "mozart", "haydn", "corelli", "handel", "cpebach", "weber", "verdi", "schubert")),
    "romantic_modern": (
        0.15,
        ("schumann_robert", "schumann_clara", "chopin", "beach", "schoenberg", "webern", "liliuokalani", "johnson_j_r", "joplin"),
    ),
}
"""Style groups of the catalogue with their sampling weights (sum 1)."""

_SCORE_EXTS = (".mxl", ".xml", ".musicxml", ".krn", ".abc")
_MERGE_OPUS = ("josquin",)  # ABC files whose tunes are the voices of one piece
_MAX_PARTS = 6
_MIN_NOTES = 8
_MAX_MXL_BYTES = 200_000  # whole multi-movement quartets (Beethoven op. 132, 133) take 30 s+ to parse


class SourceError(MidlevelError, RuntimeError):
    """A corpus piece that cannot be parsed or has no usable notes."""


@dataclass(frozen=True)
class PieceRef:
    """Where a piece lives in the music21 corpus."""

    piece_id: str  # e.g. "bach/bwv66.6.mxl" or "essenFolksong/han1.abc#7"
    collection: str  # top-level corpus folder, e.g. "bach"
    group: str  # style group, a key of STYLE_GROUPS
    path: str  # relative to the music21 corpus folder
    number: int | None = None  # tune number (ABC X: field) inside a multi-tune file


@dataclass
class Piece:
    """A piece reduced to note arrays (quarter-length units), parts ordered high to low."""

    ref: PieceRef
    title: str
    parts: list[dict[str, np.ndarray]]  # each: onset, dur (ql), pitch (int MIDI)
    measure_offsets: np.ndarray  # ql
    measure_bar: np.ndarray  # bar length (ql) of each measure's time signature
    measure_beat: np.ndarray  # beat length (ql) of each measure's time signature
    measure_phase: np.ndarray  # ql to add to (onset - offset) to get the metric position (pickups)
    length_ql: float
    time_signature: str
    extra: dict = field(default_factory=dict)

    @property
    def n_notes(self) -> int:
        return int(sum(len(p["onset"]) for p in self.parts))

    def to_json(self) -> dict:
        return {
            "ref": self.ref.__dict__,
            "title": self.title,
            "parts": [{k: v.tolist() for k, v in p.items()} for p in self.parts],
            "measure_offsets": self.measure_offsets.tolist(),
            "measure_bar": self.measure_bar.tolist(),
            "measure_beat": self.measure_beat.tolist(),
            "measure_phase": self.measure_phase.tolist(),
            "length_ql": self.length_ql,
            "time_signature": self.time_signature,
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, d: dict) -> "Piece":
        return cls(
            ref=PieceRef(**d["ref"]),
            title=d["title"],
            parts=[
                {
                    "onset": np.asarray(p["onset"], dtype=float),
                    "dur": np.asarray(p["dur"], dtype=float),
                    "pitch": np.asarray(p["pitch"], dtype=int),
                }
                for p in d["parts"]
            ],
            measure_offsets=np.asarray(d["measure_offsets"], dtype=float),
            measure_bar=np.asarray(d["measure_bar"], dtype=float),
            measure_beat=np.asarray(d["measure_beat"], dtype=float),
            measure_phase=np.asarray(d["measure_phase"], dtype=float),
            length_ql=float(d["length_ql"]),
            time_signature=d["time_signature"],
            extra=d.get("extra", {}),
        )


# --------------------------------------------------------------------------- catalogue


def music21_version() -> str:
    import music21

    return str(music21.__version__)


def corpus_root() -> Path:
    from music21 import common

    return Path(str(common.getCorpusFilePath()))


def _group_of(collection: str) -> str | None:
    for name, (_, folders) in STYLE_GROUPS.items():
        if collection in folders:
            return name
    return None


_X_RE = re.compile(r"^X:\s*(\d+)", re.MULTILINE)


@lru_cache(maxsize=1)
def catalogue() -> tuple[PieceRef, ...]:
    """Every usable piece of the installed music21 corpus, sorted by piece id."""
    root = corpus_root()
    refs: list[PieceRef] = []
    files = sorted(
        str(p.relative_to(root)).replace(os.sep, "/")
        for p in root.rglob("*")
        if p.suffix.lower() in _SCORE_EXTS and p.is_file()
    )
    present = set(files)
    for rel in files:
        collection = rel.split("/")[0]
        group = _group_of(collection)
        if group is None or "/choraleAnalyses/" in rel:
            continue
        stem, ext = os.path.splitext(rel)
        if ext == ".krn" and (stem + ".mxl") in present:  # Beethoven op. 18 no. 1 is there twice
            continue
        if ext == ".mxl" and (root / rel).stat().st_size > _MAX_MXL_BYTES:
            continue
        if ext == ".abc" and collection not in _MERGE_OPUS:
            text = (root / rel).read_text(encoding="latin-1")
            numbers = sorted({int(x) for x in _X_RE.findall(text)})
            if len(numbers) > 1:
                refs.extend(PieceRef(f"{rel}#{k}", collection, group, rel, k) for k in numbers)
                continue
        refs.append(PieceRef(rel, collection, group, rel, None))
    refs.sort(key=lambda r: r.piece_id)
    return tuple(refs)


@lru_cache(maxsize=1)
def _by_group() -> dict[str, tuple[PieceRef, ...]]:
    out: dict[str, list[PieceRef]] = {g: [] for g in STYLE_GROUPS}
    for ref in catalogue():
        out[ref.group].append(ref)
    return {g: tuple(v) for g, v in out.items()}


def piece_by_id(piece_id: str) -> PieceRef:
    for ref in catalogue():
        if ref.piece_id == piece_id:
            return ref
    raise KeyError(f"no piece {piece_id!r} in the music21 {music21_version()} corpus catalogue")


def choose_piece(rng: np.random.Generator, groups: dict[str, float] | None = None) -> PieceRef:
    """A style group by weight, then a piece of it uniformly."""
    by_group = _by_group()
    weights = {g: w for g, (w, _) in STYLE_GROUPS.items()} if groups is None else dict(groups)
    names = [g for g in STYLE_GROUPS if weights.get(g, 0) > 0 and by_group.get(g)]
    p = np.array([weights[g] for g in names], dtype=float)
    g = names[int(rng.choice(len(names), p=p / p.sum()))]
    pool = by_group[g]
    return pool[int(rng.integers(len(pool)))]


# --------------------------------------------------------------------------- extraction


def _parse(ref: PieceRef):
    from music21 import converter, stream

    path = corpus_root() / ref.path
    if ref.number is not None:
        s = converter.parse(str(path), number=ref.number)
    else:
        s = converter.parse(str(path))
    if isinstance(s, stream.Opus):
        s = s.mergeScores() if ref.collection in _MERGE_OPUS else s.scores[0]
    return s


def extract_piece(ref: PieceRef) -> Piece:
    """Parse a piece with music21 and reduce it to note arrays and a measure grid."""
    from music21 import chord, harmony, meter, note, stream

    try:
        score = _parse(ref)
    except Exception as error:  # music21 raises many kinds
        raise SourceError(f"{ref.piece_id}: music21 could not parse it ({type(error).__name__}: {error})") from error
    parts_in = list(score.parts) if isinstance(score, stream.Score) and len(score.parts) else [score]
    parts: list[dict[str, np.ndarray]] = []
    for part in parts_in:
        try:
            stripped = part.stripTies(inPlace=False)
        except Exception:  # some krn/abc structures refuse; ties then stay split
            stripped = part
        on, du, pi = [], [], []
        for el in stripped.flatten().notes:
            if isinstance(el, harmony.ChordSymbol):
                continue
            ql = float(el.duration.quarterLength)
            if ql <= 0 or el.duration.isGrace:
                continue
            if isinstance(el, chord.Chord):
                pitches = [p.midi for p in el.pitches]
            elif isinstance(el, note.Note):
                pitches = [el.pitch.midi]
            else:  # unpitched
                continue
            t = float(el.offset)
            for m in pitches:
                if 12 <= m <= 120:
                    on.append(t)
                    du.append(ql)
                    pi.append(int(m))
        if len(on) >= 2:
            order = np.lexsort((np.asarray(pi), np.asarray(on)))
            parts.append(
                {
                    "onset": np.asarray(on, dtype=float)[order],
                    "dur": np.asarray(du, dtype=float)[order],
                    "pitch": np.asarray(pi, dtype=int)[order],
                }
            )
    if not parts or sum(len(p["onset"]) for p in parts) < _MIN_NOTES:
        raise SourceError(f"{ref.piece_id}: fewer than {_MIN_NOTES} pitched notes")
    # highest part first (the top voice carries the melody), at most _MAX_PARTS parts
    parts.sort(key=lambda p: -float(np.mean(p["pitch"])))
    if len(parts) > _MAX_PARTS:
        parts = parts[: _MAX_PARTS - 1] + [parts[-1]]
    length = max(float(np.max(p["onset"] + p["dur"])) for p in parts)

    # measure grid from the first part that has measures
    ts0 = score.recurse().getElementsByClass(meter.TimeSignature).first()
    ts_default = ts0 if ts0 is not None else meter.TimeSignature("4/4")
    measures = []
    for part in parts_in:
        measures = list(part.getElementsByClass(stream.Measure))
        if measures:
            break
    offs, bars, beats = [], [], []
    current = ts_default
    for m in measures:
        if m.timeSignature is not None:
            current = m.timeSignature
        offs.append(float(m.offset))
        bars.append(float(current.barDuration.quarterLength))
        beats.append(float(current.beatDuration.quarterLength))
    if not offs:  # no measures: a regular grid in the first time signature
        bar = float(ts_default.barDuration.quarterLength)
        n = int(np.ceil(length / bar)) + 1
        offs = [i * bar for i in range(n)]
        bars = [bar] * n
        beats = [float(ts_default.beatDuration.quarterLength)] * n
    offs_a = np.asarray(offs, dtype=float)
    keep = np.concatenate([[True], np.diff(offs_a) > 1e-9])  # drop duplicate measure offsets
    offs_a, bars_a, beats_a = offs_a[keep], np.asarray(bars)[keep], np.asarray(beats)[keep]
    phase = np.zeros_like(offs_a)
    if len(offs_a) > 1:
        first_len = offs_a[1] - offs_a[0]
        if first_len < bars_a[0] - 1e-6:
            phase[0] = bars_a[0] - first_len  # anacrusis
    bars_a = np.where(bars_a > 0, bars_a, 4.0)
    beats_a = np.where(beats_a > 0, beats_a, 1.0)
    title = ""
    if score.metadata is not None and score.metadata.title:
        title = str(score.metadata.title)
    return Piece(
        ref=ref,
        title=title,
        parts=parts,
        measure_offsets=offs_a,
        measure_bar=bars_a.astype(float),
        measure_beat=beats_a.astype(float),
        measure_phase=phase,
        length_ql=length,
        time_signature=str(ts_default.ratioString),
    )


# --------------------------------------------------------------------------- cache

_memory: dict[tuple[str, str], Piece] = {}
_memory_lock = threading.Lock()
_MEMORY_MAX = 256


def cache_folder(cache_dir) -> Path:
    return Path(cache_dir) / f"music21-{music21_version()}"


def _cache_file(cache_dir, piece_id: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", piece_id)
    digest = hashlib.sha1(piece_id.encode()).hexdigest()[:8]
    return cache_folder(cache_dir) / f"{safe}.{digest}.json.gz"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def load_piece(ref: PieceRef | str, cache_dir=None) -> Piece:
    """The reduced piece, from memory, the disk cache, or music21 (then cached).

    Unparseable pieces are cached as failures too, so they are tried once only.
    """
    if isinstance(ref, str):
        ref = piece_by_id(ref)
    key = (str(cache_dir), ref.piece_id)
    with _memory_lock:
        hit = _memory.get(key)
    if hit is not None:
        return hit
    path = _cache_file(cache_dir, ref.piece_id) if cache_dir is not None else None
    data = None
    if path is not None and path.exists():
        try:
            data = json.loads(gzip.decompress(path.read_bytes()))
        except (OSError, ValueError, EOFError):
            data = None  # a damaged cache file is rebuilt
    if data is None:
        try:
            data = extract_piece(ref).to_json()
        except SourceError as error:
            data = {"error": str(error), "ref": ref.__dict__}
        if path is not None:
            _atomic_write_bytes(path, gzip.compress(json.dumps(data).encode(), mtime=0))
    if "error" in data:
        raise SourceError(data["error"])
    piece = Piece.from_json(data)  # always via JSON, so fresh and cached pieces are identical
    with _memory_lock:
        if len(_memory) >= _MEMORY_MAX:
            _memory.pop(next(iter(_memory)))
        _memory[key] = piece
    return piece
