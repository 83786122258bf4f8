"""Score a model on a labelled data set: per concept and target, n, Pearson r with a 95% bootstrap
interval, and R^2, plus the means over concepts and over targets.

The numbers come from the code that writes the model cards: ``training.loops.spectrogram_predictions``
and ``training.metrics.score_outputs``, which ``training.recipes.evaluate`` (what ``scripts/build_zoo.py``
writes into ``model_cards/results.json``) calls too, so the cards' r and R^2 are exactly what
``midlevel evaluate`` prints for the same clips. This module reads the data set, runs the model over
it, adds each column's n and the intervals, and formats the result (``midlevel evaluate`` is ``evaluate``
plus ``format_result`` / ``to_json``).

Data sets (``read_labelled``), told apart by what ``data`` is:

- **Mid-level layout** (a folder with ``metadata_annotations/annotations.csv`` and ``audio/``; targets
  from ``mean_ratings_set1.csv`` beside it, outside concepts from ``factors.csv``): read by
  ``training.data.load_splits`` (one split) or ``load_clips`` (``all``), as training and the zoo's
  held-out evaluation read it. The default split is ``test`` when ``metadata.csv`` has a ``split``
  column (the controlled corpus; what ``build_zoo`` scores), else ``all``; without that column,
  ``test``/``val``/``train`` are ``load_splits``' seeded by-artist split, as ``midlevel train`` makes it.
- **Soundtracks layout** (a folder with ``mean_ratings_set1.csv`` and no ``metadata_annotations``):
  the eight emotion targets; audio ``NNN.<ext>`` (or ``N.<ext>``) in ``audio/`` or the folder itself.
- **CSV** (a file): a ``file`` column (``path`` and ``filename`` are accepted too; paths relative to the
  CSV's folder, or to ``audio_dir``), and columns named like the model's concepts and/or targets
  (header case and spacing do not matter; blank cells are unrated and leave that column's ``n``
  short). Optional ``piece_id`` (resampling groups) and ``split`` columns; other columns are listed as
  ignored.

How outputs are computed (``result["path"]``):

- ``window`` (the default when every clip fits in one model window): the log spectrogram of each
  clip's first window (zero-padded), through ``training.cache.cached_log_spectrograms`` (stored as
  float16, optionally kept in ``cache_dir``) and ``training.loops.network_outputs`` -- exactly how
  ``build_zoo`` scored the zoo, so the cards' numbers are reproduced;
- ``track`` (the default when some clip is longer than one window): the model's own track algorithm
  (``model.predict``: every window, concepts averaged, the head on the mean), float32 throughout.

Intervals: percentile intervals over ``resamples`` bootstrap resamples (seed ``seed``) of whole
pieces when the data set names each clip's piece (clips cut from one piece share their errors),
else of clips. Bad or missing audio files are skipped and listed, never fatal (unless none is left).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .audio import AUDIO_SUFFIXES
from .datasets.errors import DatasetError, normalise_name, read_table
from .training.metrics import score_outputs

RESAMPLES = 1000
SEED = 0
SPLITS = ("test", "val", "train", "all")
FILE_COLUMNS = ("file", "path", "filename")
PIECE_COLUMNS = ("piece_id", "piece")
LAYOUT_NAMES = {"midlevel": "Mid-level layout", "soundtracks": "Soundtracks layout", "csv": "CSV"}


# -- data sets ---------------------------------------------------------------------------------------

@dataclass
class LabelledData:
    """Clips with the ratings a model can be scored on (NaN: not rated)."""

    source: Path
    layout: str  # "midlevel", "soundtracks" or "csv"
    split: str
    ids: list[str]
    paths: list[Path]
    concepts: dict[str, np.ndarray] = field(default_factory=dict)
    targets: dict[str, np.ndarray] = field(default_factory=dict)
    pieces: np.ndarray | None = None  # piece of each clip, or None (each clip on its own)
    ignored: list[str] = field(default_factory=list)  # columns that name nothing the model outputs

    def __len__(self) -> int:
        return len(self.ids)


def read_labelled(data: str | Path, *, concept_names: Sequence[str] = (), target_names: Sequence[str] = (),
                  audio_dir: str | Path | None = None, split: str | None = None) -> LabelledData:
    """The clips of ``data`` (layouts in the module docstring) with the ratings of those of ``concept_names``
    and ``target_names`` it has. ``split``: test, val, train or all (None: test where the data set records a
    split, else all)."""
    data = Path(data)
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    audio_dir = Path(audio_dir) if audio_dir is not None else None
    if data.is_file():
        return _read_csv(data, concept_names, target_names, audio_dir, split)
    if not data.is_dir():
        raise DatasetError(data, "no such file or folder")
    if (data / "metadata_annotations" / "annotations.csv").is_file():
        return _read_midlevel(data, concept_names, target_names, audio_dir, split)
    if (data / "mean_ratings_set1.csv").is_file():
        return _read_soundtracks(data, target_names, audio_dir, split)
    raise DatasetError(data, "not a labelled data set: expected a CSV file, a folder in the Mid-level layout "
                       "(metadata_annotations/annotations.csv, audio/) or one in the Soundtracks layout "
                       "(mean_ratings_set1.csv and its audio)")


def _read_midlevel(root: Path, concept_names, target_names, audio_dir: Path | None, split: str | None) -> LabelledData:
    from .concepts import MIDLEVEL_FEATURES, OUTSIDE_CONCEPTS
    from .datasets import load_midlevel
    from .datasets.mid_level import _detect_ext
    from .training.data import FACTORS_FILE, clip_pieces, load_clips, load_splits

    ds = load_midlevel(root)
    has_split = ds.metadata is not None and "split" in ds.metadata.columns
    split = split or ("test" if has_split else "all")
    factors = (root / FACTORS_FILE).is_file()
    wanted = [c for c in concept_names if c in MIDLEVEL_FEATURES or (factors and c in OUTSIDE_CONCEPTS)]
    if split == "all":
        clips = load_clips(root, concepts=wanted or None, require_audio=False)
    else:  # the very clips and arrays build_zoo scores (load_splits(...)["test"])
        clips = load_splits(root, concepts=wanted or None, require_audio=False)[split]
    ids, paths, concepts, targets = clips.ids, clips.paths, clips.concepts, clips.targets
    names, target_columns = clips.concept_names, clips.target_names
    if not ids:
        raise DatasetError(root, f"no clips in the {split!r} split"
                           + ("" if has_split else " (no split column in metadata.csv: songs are split by artist)"))
    if audio_dir is not None:
        ext = _detect_ext(audio_dir, ids)
        paths = [audio_dir / f"{i}.{ext}" for i in ids]
    out = LabelledData(root, "midlevel", split, list(ids), list(paths))
    if wanted:
        out.concepts = {n: concepts[:, k] for k, n in enumerate(names) if n in wanted}
    if targets is not None:
        out.targets = {n: targets[:, k] for k, n in enumerate(target_columns) if n in target_names}
    if ds.metadata is not None and "piece_id" in ds.metadata.columns:
        out.pieces = clip_pieces(root, ids)[0]
    return out


def _read_soundtracks(root: Path, target_names, audio_dir: Path | None, split: str | None) -> LabelledData:
    from .concepts import EMOTIONS
    from .datasets import read_soundtracks_ratings

    if split not in (None, "all"):
        raise DatasetError(root, f"a Soundtracks-layout data set has no splits; --split {split} needs a split "
                           "column (CSV) or the Mid-level layout")
    ratings = read_soundtracks_ratings(root / "mean_ratings_set1.csv")
    folder = audio_dir or (root / "audio" if (root / "audio").is_dir() else root)
    files = {}
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p.suffix.lower() in AUDIO_SUFFIXES:
                files.setdefault(p.stem, p)
    numbers = [int(n) for n in ratings.index]
    paths = [files.get(f"{n:03d}") or files.get(str(n)) or folder / f"{n:03d}.mp3" for n in numbers]
    out = LabelledData(root, "soundtracks", "all", [str(n) for n in numbers], paths)
    out.targets = {n: ratings[n].to_numpy(np.float64) for n in EMOTIONS if n in target_names}
    out.ignored = [c for c in ratings.columns if c not in out.targets]
    return out


def _read_csv(path: Path, concept_names, target_names, audio_dir: Path | None, split: str | None) -> LabelledData:
    table = read_table(path)
    found = [c for c in FILE_COLUMNS if c in table.names]
    if len(found) != 1:
        raise DatasetError(path, ("has several file columns " if found else "has no 'file' column ")
                           + f"(audio path relative to the CSV or --audio-dir); found {table.raw}",
                           line=table.header_line)
    file_column = found[0]
    ids = [str(i) for i in table.ids(file_column, os.path.normpath)]
    base = audio_dir or path.parent
    rows = np.arange(len(ids))
    has_split = "split" in table.names
    split = split or ("test" if has_split else "all")
    if split != "all":
        if not has_split:
            raise DatasetError(path, f"no 'split' column, so there is no {split!r} split (use --split all)",
                               line=table.header_line)
        labels = [c.lower() for c in table.cells("split")]
        rows = np.flatnonzero([s == split for s in labels])
        if not len(rows):
            raise DatasetError(path, f"no row has split {split!r}", column="split")
    concepts = {normalise_name(c): c for c in concept_names}
    targets = {normalise_name(t): t for t in target_names}
    out = LabelledData(path, "csv", split, [ids[k] for k in rows], [base / ids[k] for k in rows])
    piece = next((c for c in PIECE_COLUMNS if c in table.names), None)
    for column in table.names:
        if column in (file_column, "split", piece):
            continue
        if column not in concepts and column not in targets:
            out.ignored.append(table.raw[table.names.index(column)])
            continue
        values = np.full(len(table.rows), np.nan)
        for k, (text, line) in enumerate(zip(table.cells(column), table.lines)):
            value = table.parse_float(text)
            if value is None:
                raise table.error(f"{text!r} is not a number (leave the cell blank for an unrated clip)", line, column)
            values[k] = value
        if column in concepts:
            out.concepts[concepts[column]] = values[rows]
        else:
            out.targets[targets[column]] = values[rows]
    if piece is not None:
        cells = table.cells(piece)
        out.pieces = np.asarray([cells[k] or ids[k] for k in rows], dtype=object)
    # model order, not the file's
    out.concepts = {c: out.concepts[c] for c in concept_names if c in out.concepts}
    out.targets = {t: out.targets[t] for t in target_names if t in out.targets}
    return out


# -- running a model over the clips ------------------------------------------------------------------

def _probe(path: Path, sample_rate: int) -> int | str:
    """The file's length in samples at ``sample_rate`` (from its header), or why it cannot be read."""
    from .audio import AudioError, file_length

    try:
        frames, rate = file_length(path)
    except AudioError as exc:
        return _reason(exc, path)
    return int(round(frames * sample_rate / rate))


def _reason(exc: Exception, path: Path) -> str:
    text = str(exc)
    return text[len(str(path)) + 2:] if text.startswith(f"{path}: ") else text


def _window_outputs(model, paths: list[Path], cache_dir: str | Path | None, progress: bool
                    ) -> tuple[list[int], np.ndarray | None, np.ndarray, dict[int, str]]:
    """(kept positions, concepts, targets, {position: reason}) through the spectrogram cache."""
    from .audio import AudioError, load_audio
    from .training.cache import cached_log_spectrograms
    from .training.loops import ArraySet, spectrogram_predictions

    kept, bad = list(range(len(paths))), {}
    with tempfile.TemporaryDirectory(prefix="midlevel-evaluate-") as scratch:
        while True:
            try:
                logspec = cached_log_spectrograms([paths[k] for k in kept], model.frontend,
                                                  model.config.window_samples, cache_dir or scratch,
                                                  progress=progress)
                break
            except AudioError:  # a header that reads but audio that does not: find every such file
                for k in list(kept):
                    try:
                        load_audio(paths[k], model.config.sample_rate)
                    except AudioError as exc:
                        bad[k] = _reason(exc, paths[k])
                        kept.remove(k)
                if not kept:
                    return [], None, np.zeros((0, len(model.config.target_names))), bad
    concepts, targets = spectrogram_predictions(model, ArraySet(logspec))
    return kept, concepts, targets, bad


def _track_outputs(model, paths: list[Path], batch_size: int, progress: bool
                   ) -> tuple[list[int], np.ndarray | None, np.ndarray, dict[int, str]]:
    """(kept positions, concepts, targets, {position: reason}) through ``model.predict``."""
    from tqdm.auto import tqdm

    from .audio import AudioError

    kept, concepts, targets, bad = [], [], [], {}
    for k in tqdm(range(len(paths)), desc="evaluate", disable=not progress):
        try:
            prediction = model.predict(paths[k], batch_size=batch_size)
        except AudioError as exc:
            bad[k] = _reason(exc, paths[k])
            continue
        kept.append(k)
        concepts.append(prediction.concepts)
        targets.append(prediction.targets)
    two_stage = model.config.kind == "two_stage"
    n_t = len(model.config.target_names)
    return (kept, np.array(concepts).reshape(len(kept), -1) if two_stage else None,
            np.array(targets).reshape(len(kept), n_t), bad)


def _select(outputs: np.ndarray, names: Sequence[str], wanted: Sequence[str]) -> np.ndarray:
    """The columns ``wanted`` of ``outputs`` (named ``names``), C-ordered: ``outputs`` itself when that is all of
    them. (A column-indexed copy comes out Fortran-ordered, and numpy's sums over it round differently in the
    last bit, so the cards' numbers would not be reproduced byte for byte.)"""
    index = [list(names).index(n) for n in wanted]
    return outputs if index == list(range(outputs.shape[1])) else np.ascontiguousarray(outputs[:, index])


def evaluate(model, data: str | Path | LabelledData, *, audio_dir: str | Path | None = None,
             split: str | None = None, path: str = "auto", cache_dir: str | Path | None = None,
             resamples: int = RESAMPLES, seed: int = SEED, batch_size: int = 8, progress: bool = False,
             weights_sha256: str | None = None) -> dict[str, Any]:
    """Score ``model`` (an ``AudioModel``, or a zoo name or model folder for ``zoo.load``) on ``data``.

    Returns a JSON-ready dict: what was scored (data, layout, split, path, clips, resampling), ``skipped``
    ([{"file", "reason"}] for each clip whose audio could not be read), and per kind ("concepts" for a
    two-stage model on a data set that rates some of its concepts; "targets") a table {name: {"r", "r2",
    "n", "r_ci"}, "mean": {"r", "r2", "r_ci"}}. ``path``: "auto", "window" or "track" (module docstring).
    """
    if path not in ("auto", "window", "track"):
        raise ValueError(f"path must be auto, window or track, got {path!r}")
    if not hasattr(model, "config"):
        model, weights_sha256 = load_model(model)
    cfg = model.config
    two_stage = cfg.kind == "two_stage"
    concept_names = list(cfg.concept_names) if two_stage else []
    target_names = list(cfg.target_names)
    if not isinstance(data, LabelledData):
        data = read_labelled(data, concept_names=concept_names, target_names=target_names,
                             audio_dir=audio_dir, split=split)
    if not data.concepts and not data.targets:
        outputs = ", ".join(concept_names + target_names)
        raise DatasetError(data.source, f"rates none of what {model.name} outputs ({outputs})")

    lengths = [_probe(p, cfg.sample_rate) for p in data.paths]
    bad = {k: v for k, v in enumerate(lengths) if isinstance(v, str)}
    readable = [k for k in range(len(data)) if k not in bad]
    if not readable:
        first = min(bad)
        raise DatasetError(data.source, f"no clip could be read ({len(bad)} listed; the first: "
                           f"{data.paths[first]}: {bad[first]})")
    if path == "auto":
        path = "window" if all(lengths[k] <= cfg.window_samples for k in readable) else "track"
    run = (_window_outputs(model, [data.paths[k] for k in readable], cache_dir, progress) if path == "window"
           else _track_outputs(model, [data.paths[k] for k in readable], batch_size, progress))
    kept_local, concepts, targets, bad_local = run
    bad.update({readable[k]: reason for k, reason in bad_local.items()})
    kept = np.asarray([readable[k] for k in kept_local], dtype=int)
    skipped = [{"file": str(data.paths[k]), "reason": bad[k]} for k in sorted(bad)]
    if not len(kept):
        raise DatasetError(data.source, f"no clip could be read ({len(skipped)} skipped; the first: "
                           f"{skipped[0]['file']}: {skipped[0]['reason']})")

    columns = {}
    if two_stage and data.concepts:
        truth = np.column_stack([data.concepts[n][kept] for n in data.concepts])
        columns["concepts"] = (truth, _select(concepts, concept_names, data.concepts), list(data.concepts))
    if data.targets:
        truth = np.column_stack([data.targets[n][kept] for n in data.targets])
        columns["targets"] = (truth, _select(targets, target_names, data.targets), list(data.targets))
    groups = data.pieces[kept] if data.pieces is not None else None
    scores = score_outputs(columns, groups=groups, counts=True, resamples=resamples, seed=seed)
    result: dict[str, Any] = {
        "model": model.name, "weights_sha256": weights_sha256, "data": str(data.source), "layout": data.layout,
        "split": data.split, "path": path, "n": scores.pop("n"), "n_listed": len(data), "skipped": skipped,
        "resamples": resamples, "seed": seed,
        "resampled_by": "piece" if groups is not None else "clip",
        "resampling_units": int(len(set(groups.tolist()))) if groups is not None else int(len(kept)),
    }
    if data.ignored:
        result["ignored_columns"] = list(data.ignored)
    unrated = [c for c in concept_names if c not in data.concepts] + [t for t in target_names if t not in data.targets]
    if unrated:
        result["unrated"] = unrated
    result.update(scores)
    return result


def load_model(name_or_path: str | Path | None):
    """(model, the sha256 of the weights actually loaded) for a zoo name, model folder or None (default)."""
    from .checkpoint import read_config
    from .zoo import DEFAULT_MODEL, installed_entry, load, resolve

    model = load(name_or_path)
    ref = name_or_path if name_or_path is not None else DEFAULT_MODEL
    if ref is None:
        return model, None
    with warnings.catch_warnings():  # load() has said it already
        warnings.simplefilter("ignore")
        target = resolve(ref)
        if isinstance(target, Path):
            return model, read_config(target)[1].get("weights_sha256")
        return model, installed_entry(target).sha256


# -- output ------------------------------------------------------------------------------------------

def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def to_json(result: dict[str, Any]) -> str:
    """The result as strict JSON (an undefined r, e.g. of a constant prediction, is null)."""
    return json.dumps(_finite(result), indent=1, allow_nan=False)


def _num(value, width: int = 6) -> str:
    return f"{value:{width}.3f}" if value is not None and math.isfinite(value) else f"{'-':>{width}}"


def format_result(result: dict[str, Any]) -> str:
    """A readable table per concept and target: r [95% interval], R^2, n, then the mean."""
    how = {"window": "each clip's first window via the spectrogram cache, as the model cards were scored",
           "track": "the model's track algorithm (every window, concepts averaged, then the head)"}[result["path"]]
    head = [f"{result['model']} on {result['data']} ({LAYOUT_NAMES[result['layout']]}, split {result['split']}): "
            f"{result['n']} of {result['n_listed']} clip(s) scored",
            f"outputs: {how}"]
    if result["resamples"]:
        head.append(f"95% intervals of r: {result['resamples']} bootstrap resamples of {result['resampling_units']} "
                    f"{result['resampled_by']}(s), seed {result['seed']}")
    if result.get("unrated"):
        head.append(f"not rated in the data set: {', '.join(result['unrated'])}")
    if result.get("ignored_columns"):
        head.append(f"columns ignored (no output of the model): {', '.join(result['ignored_columns'])}")
    lines = head
    for kind in ("concepts", "targets"):
        if kind not in result:
            continue
        table = result[kind]
        width = max(len(n) for n in table) + 2
        lines += ["", f"{kind[:-1]:<{width}}{'r':>6}  {'95% CI':<16}{'r2':>7}{'n':>7}"]
        for name, row in table.items():
            ci = row.get("r_ci")
            ci_text = f"[{_num(ci[0], 0)}, {_num(ci[1], 0)}]" if ci else ""
            n = row.get("n", "")
            lines.append(f"{name:<{width}}{_num(row['r'])}  {ci_text:<16}{_num(row['r2'], 7)}{n:>7}")
    return "\n".join(lines)
