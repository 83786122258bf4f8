"""Corpus build: plan, sample, rate, render and write clips; resumable, deterministic, parallel.

Determinism. Clip ``i`` (song id ``i + 1``) depends only on (seed, i) and the installed music21
corpus: its piece is drawn with ``default_rng([seed, i // clips_per_piece, 0])``, its factors with
``default_rng([seed, i, 1])``, its emotion noise with ``default_rng([seed, i, 2])`` and every random
choice inside the realisation with sub-streams of ``(seed, i)``. So the number of clips, the number
of workers and resuming change nothing about any clip; the CSVs, assembled at the end from the
per-clip records in song-id order with fixed number formats, are byte-identical for a seed.

Resume. Each clip writes its audio (temporary file + ``os.replace``), then its record
``records/<song_id>.json`` (the same way); a clip counts as done when both exist and the record
carries this build's settings hash. Re-running skips done clips.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..._extras import require
from ...concepts import EMOTIONS, MIDLEVEL_FEATURES
from ...errors import MidlevelError
from . import conditions as C
from . import emotions as E
from . import ratings as R
from . import render as RD
from .factors import Factors, realize, sample_factors
from .sources import STYLE_GROUPS, Piece, SourceError, catalogue, choose_piece, load_piece, music21_version

CORPUS_FORMAT_VERSION = 2  # 2: splits by piece id alone; only_split
"""Bumped whenever a formula, a factor range or the layout changes: it is part of the settings hash."""

SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
SPLIT_NAMES = ("train", "val", "test")

ARTISTS = {
    "bach": "Johann Sebastian Bach",
    "palestrina": "Giovanni Pierluigi da Palestrina",
    "monteverdi": "Claudio Monteverdi",
    "josquin": "Josquin des Prez",
    "trecento": "Trecento (various)",
    "ciconia": "Johannes Ciconia",
    "luca": "Luca (Gloria)",
    "lusitano": "Vicente Lusitano",
    "ryansMammoth": "Ryan's Mammoth Collection (folk)",
    "essenFolksong": "Essen Folksong Collection",
    "oneills1850": "O'Neill's Music of Ireland (folk)",
    "airdsAirs": "Aird's Airs (folk)",
    "miscFolk": "Folk (various)",
    "nottingham-dataset": "Nottingham Dataset (folk)",
    "beethoven": "Ludwig van Beethoven",
    "mozart": "Wolfgang Amadeus Mozart",
    "haydn": "Joseph Haydn",
    "corelli": "Arcangelo Corelli",
    "handel": "George Frideric Handel",
    "cpebach": "Carl Philipp Emanuel Bach",
    "weber": "Carl Maria von Weber",
    "verdi": "Giuseppe Verdi",
    "schubert": "Franz Schubert",
    "schumann_robert": "Robert Schumann",
    "schumann_clara": "Clara Schumann",
    "chopin": "Frederic Chopin",
    "beach": "Amy Beach",
    "schoenberg": "Arnold Schoenberg",
    "webern": "Anton Webern",
    "liliuokalani": "Liliuokalani",
    "johnson_j_r": "J. Rosamond Johnson",
    "joplin": "Scott Joplin",
}


@dataclass(frozen=True)
class BuildSettings:
    """Everything (besides n and workers) that determines the corpus."""

    seed: int = 0
    seconds: float = 10.0
    sample_rate: int = RD.SAMPLE_RATE
    audio_format: str = "flac"
    clips_per_piece: int = 3
    gain: float = RD.GAIN
    only_split: str | None = None  # draw clips only from pieces of this split (held-out test corpora)
    #: "dry" (one soundfont, no room, fixed gain, lossless: the corpora built before) or "randomised"
    #: (``conditions``: soundfont, room, EQ, compression, level, noise and codec drawn per clip)
    conditions: str = "dry"

    def key(self) -> dict:
        extra = {} if self.conditions == "dry" else {"conditions": self.conditions}  # dry digests unchanged
        return {**extra,
            "format_version": CORPUS_FORMAT_VERSION,
            "music21": music21_version(),
            "seed": int(self.seed),
            "seconds": float(self.seconds),
            "sample_rate": int(self.sample_rate),
            "audio_format": self.audio_format,
            "clips_per_piece": int(self.clips_per_piece),
            "gain": float(self.gain),
            "only_split": self.only_split,
        }

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.key(), sort_keys=True).encode()).hexdigest()[:16]


class CorpusBuildError(MidlevelError, RuntimeError):
    """A corpus folder or clip that cannot be built as asked."""


# ------------------------------------------------------------------------------ one clip


def piece_for(seed: int, index: int, clips_per_piece: int = 3, cache_dir=None, only_split: str | None = None) -> Piece:
    """The piece of clip ``index``: drawn per group of ``clips_per_piece`` clips; a piece music21
    cannot read is replaced by the next draw of the same group's stream. With ``only_split``,
    pieces of other splits are skipped (so a corpus built with another seed can hold only
    pieces no training split ever contains)."""
    group = index // max(1, int(clips_per_piece))
    rng = np.random.default_rng([int(seed), group, 0])
    errors = []
    for _ in range(5000):
        if len(errors) >= 50:
            break
        ref = choose_piece(rng)
        if only_split is not None and split_of(ref.piece_id) != only_split:
            continue
        try:
            return load_piece(ref, cache_dir)
        except SourceError as error:
            errors.append(str(error))
    raise CorpusBuildError(f"clip {index}: no readable piece found (last errors: {errors[-3:]})")


def split_of(piece_id: str) -> str:
    """train / val / test for a piece (80/10/10 by a hash of the piece id): every clip of a piece
    is in the same split, and the split does not depend on the corpus seed, so a test corpus built
    with another seed never holds a piece that any training split holds."""
    u = int(hashlib.sha256(f"midlevel-split|{piece_id}".encode()).hexdigest()[:15], 16) / 16**15
    edges = np.cumsum(SPLIT_FRACTIONS)
    return SPLIT_NAMES[int(np.searchsorted(edges, u, side="right"))]


def make_clip(seed: int, index: int, seconds: float = 10.0, *, clips_per_piece: int = 3, cache_dir=None,
              only_split: str | None = None, **overrides):
    """(piece, factors, clip) of clip ``index``. ``overrides`` replace sampled factor values
    (the realisation's random draws stay the same, so one factor can be changed alone)."""
    piece = piece_for(seed, index, clips_per_piece, cache_dir, only_split)
    factors = sample_factors(np.random.default_rng([int(seed), int(index), 1]), piece, seconds)
    if overrides:
        factors = factors.replace(**overrides)
    clip = realize(piece, factors, seconds, key=(int(seed), int(index)))
    return piece, factors, clip


def clip_labels(seed: int, index: int, piece: Piece, factors: Factors, clip) -> dict:
    """Everything about a clip except its audio: ratings, emotions, factors, provenance."""
    ratings, raw, meas = R.compute_ratings(clip, factors)
    emo, clean = E.emotion_targets(ratings, factors, np.random.default_rng([int(seed), int(index), 2]))
    ref = piece.ref
    return {
        "song_id": int(index) + 1,
        "piece_id": ref.piece_id,
        "collection": ref.collection,
        "style": ref.group,
        "artist": ARTISTS.get(ref.collection, ref.collection),
        "title": piece.title,
        "split": split_of(ref.piece_id),
        "ratings": ratings,
        "raw": raw,
        "measures": meas,
        "emotions": emo,
        "emotions_noise_free": clean,
        "factors": factors.to_record(),
        "clip": {
            "tonic": clip.tonic,
            "mode_found": clip.mode_found,
            "mode_after": clip.mode_after,
            "n_parts": clip.n_parts,
            "n_notes": int(len(clip.onset)),
            "beat_ql": clip.beat_ql,
            **clip.info,
        },
    }


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _record_path(out: Path, song_id: int) -> Path:
    return out / "records" / f"{song_id}.json"


def _audio_path(out: Path, song_id: int, fmt: str) -> Path:
    return out / "audio" / f"{song_id}.{fmt}"


def _is_done(out: Path, song_id: int, settings: BuildSettings, digest: str) -> bool:
    rec, aud = _record_path(out, song_id), _audio_path(out, song_id, settings.audio_format)
    if not (rec.is_file() and aud.is_file()):
        return False
    try:
        return json.loads(rec.read_text(encoding="utf-8")).get("settings") == digest
    except (OSError, ValueError):
        return False


def _build_clip(out: Path, settings: BuildSettings, index: int, cache_dir, soundfont, workdir) -> dict:
    piece, factors, clip = make_clip(
        settings.seed, index, settings.seconds, clips_per_piece=settings.clips_per_piece, cache_dir=cache_dir,
        only_split=settings.only_split,
    )
    rec = clip_labels(settings.seed, index, piece, factors, clip)
    if settings.conditions == "randomised":
        # a stream of its own, so the clip, its factors and its labels are the dry build's
        rng = np.random.default_rng([int(settings.seed), int(index), 3])
        cond = C.sample_conditions(rng)
        audio, info = RD.render_clip(clip, soundfont=C.SOUNDFONTS[cond.soundfont], sample_rate=settings.sample_rate,
                                     gain=settings.gain, workdir=workdir)
        audio = C.apply_conditions(audio, settings.sample_rate, cond, rng)
        rec["conditions"] = cond.to_record()
    else:
        audio, info = RD.render_clip(clip, soundfont=soundfont, sample_rate=settings.sample_rate, gain=settings.gain,
                                     workdir=workdir)
    RD.write_audio(_audio_path(out, rec["song_id"], settings.audio_format), audio, settings.sample_rate, settings.audio_format)
    rec["audio"] = {"file": f"audio/{rec['song_id']}.{settings.audio_format}", **info}
    rec["settings"] = settings.digest()
    _atomic_write_text(_record_path(out, rec["song_id"]), json.dumps(rec, sort_keys=True))
    return rec


def _build_group(out: str, settings: BuildSettings, indices: list[int], cache_dir, soundfont) -> list[int]:
    out_p = Path(out)
    done = []
    for i in indices:
        try:
            _build_clip(out_p, settings, i, cache_dir, soundfont, None)
        except RD.RenderDependencyError:
            raise
        except Exception as error:
            raise CorpusBuildError(f"clip {i} (song id {i + 1}): {type(error).__name__}: {error}") from error
        done.append(i)
    return done


# ------------------------------------------------------------------------------ tables


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, (list, tuple)):
        return "|".join(_fmt(x) for x in v)
    return str(v)


def _clean(text: str, sep: str) -> str:
    return str(text).replace(sep, ",").replace("\n", " ").replace("\r", " ").replace('"', "'")


def _tables(records: list[dict], settings: BuildSettings) -> dict[str, str]:
    ann = ["song_id," + ",".join(MIDLEVEL_FEATURES)]
    meta = ["song id;Artist;Source;ID at file source;piece_id;collection;style;title;split;excerpt_start_ql;seconds"]
    emo = ["number," + ",".join(EMOTIONS)]
    fnames = [f.name for f in dataclasses.fields(Factors)]
    mnames = list(records[0]["measures"]) if records else []
    fac = ["song_id,split," + ",".join(fnames) + "," + ",".join(f"m_{m}" for m in mnames) + ","
           + ",".join(f"raw_{f}" for f in MIDLEVEL_FEATURES) + ",peak,rms_dbfs,limiter_gain"]  # fmt: skip
    for r in records:
        sid = r["song_id"]
        ann.append(f"{sid}," + ",".join(_fmt(float(r["ratings"][f])) for f in MIDLEVEL_FEATURES))
        meta.append(
            ";".join(
                [
                    str(sid),
                    _clean(r["artist"], ";"),
                    "music21-corpus",
                    _clean(r["piece_id"], ";"),
                    _clean(r["piece_id"], ";"),
                    r["collection"],
                    r["style"],
                    _clean(r["title"], ";"),
                    r["split"],
                    _fmt(float(r["factors"]["excerpt_start_ql"])),
                    _fmt(float(settings.seconds)),
                ]
            )
        )
        emo.append(f"{sid}," + ",".join(_fmt(float(r["emotions"][e])) for e in EMOTIONS))
        row = [str(sid), r["split"]]
        row += [_clean(_fmt(r["factors"][k]), ",") for k in fnames]
        row += [_fmt(float(r["measures"][k])) for k in mnames]
        row += [_fmt(float(r["raw"][f])) for f in MIDLEVEL_FEATURES]
        a = r.get("audio", {})
        row += [_fmt(float(a.get("peak", float("nan")))), _fmt(float(a.get("rms_dbfs", float("nan")))), _fmt(float(a.get("limiter_gain", 1.0)))]
        fac.append(",".join(row))
    tables = {}
    if records and "conditions" in records[0]:
        names = list(records[0]["conditions"])
        tables["conditions.csv"] = "\n".join(["song_id," + ",".join(names)] + [
            f"{r['song_id']}," + ",".join(_clean(_fmt(r["conditions"][k]), ",") for k in names) for r in records]) + "\n"
    return {
        **tables,
        "metadata_annotations/annotations.csv": "\n".join(ann) + "\n",
        "metadata_annotations/metadata.csv": "\n".join(meta) + "\n",
        "mean_ratings_set1.csv": "\n".join(emo) + "\n",
        "factors.csv": "\n".join(fac) + "\n",
    }


# ------------------------------------------------------------------------------ build


def worker_context():
    """Process start method for rendering workers: fork, so they inherit the imported modules and the
    parsed music21 catalogue (spawn where fork is unavailable)."""
    import multiprocessing

    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method)


def build_corpus(
    out_dir,
    n: int,
    seconds: float = 10.0,
    seed: int = 0,
    workers: int = 1,
    *,
    audio_format: str = "flac",
    sample_rate: int = RD.SAMPLE_RATE,
    clips_per_piece: int = 3,
    gain: float = RD.GAIN,
    soundfont=None,
    cache_dir=None,
    progress: bool = True,
    only_split: str | None = None,
    conditions: str = "dry",
) -> dict:
    """Build (or finish) a controlled corpus of ``n`` clips of ``seconds`` s under ``out_dir``.

    Layout (docs/controlled_corpus.md): ``metadata_annotations/annotations.csv`` and
    ``metadata.csv`` (Mid-level layout), ``mean_ratings_set1.csv`` (Soundtracks layout, keyed by
    the same numeric song ids), ``audio/<song_id>.<audio_format>``, ``factors.csv``,
    ``ground_truth.json``, ``corpus.json``, and per-clip ``records/``. Clips already built with the
    same settings are skipped, so an interrupted build resumes; a folder built with other settings
    is refused. ``cache_dir`` holds the parsed music21 pieces (default ``out_dir/.cache``).
    ``workers > 1`` renders in a process pool. ``only_split`` ("test", ...) draws clips only from
    that split's pieces: a held-out test corpus for models trained on a corpus of another seed.
    Returns a summary dict (counts, timing, sizes).
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    if audio_format not in RD.AUDIO_FORMATS:
        raise ValueError(f"audio_format must be one of {sorted(RD.AUDIO_FORMATS)}, got {audio_format!r}")
    RD.check_dependencies(soundfont)  # one clear message before any work
    if only_split is not None and only_split not in SPLIT_NAMES:
        raise ValueError(f"only_split must be one of {SPLIT_NAMES} or None, got {only_split!r}")
    if conditions not in ("dry", "randomised"):
        raise CorpusBuildError(f"conditions must be 'dry' or 'randomised', got {conditions!r}")
    if conditions == "randomised":
        require("pedalboard", "corpus", "randomised recording conditions")
    if conditions == "randomised" and not C.available_soundfonts():
        raise CorpusBuildError("randomised conditions need the General MIDI soundfonts: apt-get install "
                               + " ".join(C.DEBIAN_PACKAGES))
    settings = BuildSettings(int(seed), float(seconds), int(sample_rate), audio_format, int(clips_per_piece), float(gain),
                             only_split, conditions)
    digest = settings.digest()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir is not None else out / ".cache"
    cfg_path = out / "corpus.json"
    if cfg_path.exists():
        try:
            old = json.loads(cfg_path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise CorpusBuildError(f"{cfg_path}: unreadable ({error}); delete it to rebuild") from error
        if old.get("settings_hash") != digest:
            raise CorpusBuildError(
                f"{out} holds a corpus built with other settings ({old.get('settings')}); "
                f"asked for {settings.key()}. Use a new folder, or delete the old one."
            )
    _atomic_write_text(cfg_path, json.dumps({"settings": settings.key(), "settings_hash": digest, "status": "building"}, indent=2, sort_keys=True))

    t0 = time.perf_counter()
    catalogue()  # build the catalogue once in the parent
    todo = [i for i in range(n) if not _is_done(out, i + 1, settings, digest)]
    skipped = n - len(todo)
    groups: dict[int, list[int]] = {}
    for i in todo:
        groups.setdefault(i // max(1, clips_per_piece), []).append(i)
    tasks = [groups[g] for g in sorted(groups)]
    bar = _progress(total=n, initial=skipped, enabled=progress)
    try:
        if workers <= 1 or len(tasks) <= 1:
            for t in tasks:
                for i in _build_group(str(out), settings, t, cache, soundfont):
                    bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=int(workers), mp_context=worker_context()) as pool:
                futures = [pool.submit(_build_group, str(out), settings, t, cache, soundfont) for t in tasks]
                try:
                    for fut in as_completed(futures):
                        bar.update(len(fut.result()))
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
    finally:
        bar.close()
    t_render = time.perf_counter() - t0

    records = []
    for i in range(n):
        path = _record_path(out, i + 1)
        try:
            records.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as error:
            raise CorpusBuildError(f"{path}: clip record missing or unreadable ({error}); re-run the build") from error
    for rel, text in _tables(records, settings).items():
        _atomic_write_text(out / rel, text)
    gt = {**E.ground_truth(), "settings": settings.key()}
    _atomic_write_text(out / "ground_truth.json", json.dumps(gt, indent=2, sort_keys=True) + "\n")
    splits = {s: sum(1 for r in records if r["split"] == s) for s in SPLIT_NAMES}
    pieces = {s: len({r["piece_id"] for r in records if r["split"] == s}) for s in SPLIT_NAMES}
    cfg = {
        "settings": settings.key(),
        "settings_hash": digest,
        "status": "complete",
        "n": n,
        "clips_per_split": splits,
        "pieces_per_split": pieces,
        "style_groups": {g: w for g, (w, _) in STYLE_GROUPS.items()},
        "files": {
            "annotations": "metadata_annotations/annotations.csv",
            "metadata": "metadata_annotations/metadata.csv",
            "emotions": "mean_ratings_set1.csv",
            "factors": "factors.csv",
            "ground_truth": "ground_truth.json",
            "audio": f"audio/<song_id>.{audio_format}",
        },
    }
    _atomic_write_text(cfg_path, json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    audio_bytes = sum(_audio_path(out, i + 1, audio_format).stat().st_size for i in range(n))
    limited = sum(1 for r in records if r.get("audio", {}).get("limiter_gain", 1.0) < 1.0)
    elapsed = time.perf_counter() - t0
    return {
        "out_dir": str(out),
        "n": n,
        "built": len(todo),
        "skipped": skipped,
        "seconds": float(seconds),
        "seed": int(seed),
        "workers": int(workers),
        "elapsed_s": elapsed,
        "render_s": t_render,
        "clips_per_s": (len(todo) / t_render) if todo and t_render > 0 else None,
        "audio_bytes": audio_bytes,
        "audio_mb_per_1000_clips": audio_bytes / n * 1000 / 1e6,
        "clips_limited": limited,
        "clips_per_split": splits,
        "pieces_per_split": pieces,
    }


def _progress(total: int, initial: int, enabled: bool, desc: str = "corpus build"):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        enabled = False
    if not enabled:

        class _Null:
            def update(self, k=1):
                pass

            def close(self):
                pass

        return _Null()
    return tqdm(total=total, initial=initial, unit="clip", desc=desc)


# ------------------------------------------------------------------------------ no audio


def sample_ratings(
    n: int,
    seed: int = 0,
    seconds: float = 10.0,
    *,
    clips_per_piece: int = 3,
    cache_dir=None,
    pieces: list[str] | None = None,
    progress: bool = False,
):
    """Factors, ratings and emotions of ``n`` clips without rendering audio (a DataFrame indexed
    by song id). The same clips as ``build_corpus`` with the same seed, unless ``pieces`` (a list
    of piece ids) is given: then clip i uses ``pieces[(i // clips_per_piece) % len(pieces)]``,
    a cheap way to get many factor draws over few parsed scores."""
    import pandas as pd

    rows = []
    it = range(int(n))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, unit="clip", desc="sample ratings")
    for i in it:
        if pieces is None:
            piece = piece_for(seed, i, clips_per_piece, cache_dir)
        else:
            piece = load_piece(pieces[(i // max(1, clips_per_piece)) % len(pieces)], cache_dir)
        factors = sample_factors(np.random.default_rng([int(seed), i, 1]), piece, seconds)
        clip = realize(piece, factors, seconds, key=(int(seed), i))
        rec = clip_labels(seed, i, piece, factors, clip)
        row = {"song_id": rec["song_id"], "piece_id": rec["piece_id"], "style": rec["style"], "split": rec["split"]}
        row.update(rec["ratings"])
        row.update({f"raw_{k}": v for k, v in rec["raw"].items()})
        row.update({f"m_{k}": v for k, v in rec["measures"].items()})
        row.update({f"emo_{k}": v for k, v in rec["emotions"].items()})
        for k, v in rec["factors"].items():
            row[k] = "|".join(map(str, v)) if isinstance(v, list) else v
        rows.append(row)
    return pd.DataFrame(rows).set_index("song_id")


def read_splits(root) -> dict[str, list[str]]:
    """Song ids per split from a built corpus's metadata.csv (``split`` column)."""
    import pandas as pd

    meta = pd.read_csv(Path(root) / "metadata_annotations" / "metadata.csv", sep=";", dtype=str)
    return {s: meta.loc[meta["split"] == s, "song id"].tolist() for s in SPLIT_NAMES}
