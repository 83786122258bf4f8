"""Annotate a catalogue: one table row per audio file, resumable, on one machine or on Ray.

``annotate(inputs, out)`` explains every input with one model and writes a Parquet (or CSV, by ``out``'s
suffix) table, a row per track in input order, and a table of the files that failed (path, reason), so a
bad file never stops the run. ``midlevel annotate`` is this function plus a summary line.

Inputs (``expand_inputs``), in the order given, the same file kept once:

- a folder: its audio files (``AUDIO_SUFFIXES``), recursively, sorted by path; hidden files and folders
  (names starting with ``.``) are skipped;
- a glob (``music/**/*.mp3``; quote it so that the shell leaves it to us): the audio files it matches,
  folders it matches walked as above;
- a list: a ``.csv`` or ``.parquet`` file with a ``file`` (or ``path`` / ``filename``) column, paths
  relative to the list's folder; every entry is kept, so a bad one lands in the errors table;
- anything else is one file (a missing one, too: it lands in the errors table);
- ``scheme://`` URIs (``s3://bucket/music/``, ``gs://...``, ``file:///...``) of a file or folder, read
  through pyarrow's filesystems (each file copied to a temporary file, then decoded as a local one).

Output columns (``table_columns``): ``path`` (as expanded), ``model``, ``weights_sha256``, ``duration_s``,
``n_windows``, ``flags`` (comma-separated, ``""`` for none), ``ood_score`` (NaN when the model has no
calibration), ``concept.<c>``, ``target.<t>``, ``intercept.<t>``, ``contrib.<t>.<c>`` and ``notes``
(``" | "``-separated), ``runtime``. Black-box models (no concepts) give the target columns only. Values are
those of ``model.explain(path)`` with one torch thread, float64; ``target.<t>`` is ``intercept.<t>`` plus the
sum of the ``contrib.<t>.*`` columns.

Runtimes: ``torch`` (the default) computes every row exactly as ``model.explain`` does; ``onnxruntime`` runs
the per-window network (backbone and the layer after it) in onnxruntime, one thread per worker, and everything
else as ``explain`` does (``midlevel.onnx_runtime``): faster on the CPU, equal to float32 rounding rather than
bit for bit, so each row names its runtime and a run resumes only with the runtime it started with. The graph
is built once in this process and handed to every worker.

Resuming: results are appended to ``OUT.parts/`` as JSON-lines part files, each written atomically (a
crash leaves whole rows only), every ``part_rows`` files or ``part_seconds`` seconds, whichever first,
and on Ctrl-C. A rerun with the same ``out`` (and model) skips every input a part already holds --
failures included -- and computes the rest; rows of inputs no longer listed are dropped. The tables are
built from the parts in input order once every input is done, so they are byte-identical to those of an
uninterrupted run, and then ``OUT.parts/`` is removed. A lock keeps two runs off the same ``out``; parts
of another model (other weights, another runtime) are refused rather than mixed in.

Engines: ``local`` runs ``workers`` processes (``workers=1``: this process), each loading the model once
and using one torch thread; ``ray`` maps the paths over a Ray Data actor pool of ``workers`` actors
(default: every CPU of the cluster), each loading the model once (``docs/scale_out.md``). Both give the
same rows: every row is computed by ``annotate_one`` with one torch thread.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import json
import logging
import math
import os
import re
import shutil
import signal
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch

from ._extras import require, require_all
from .audio import AUDIO_SUFFIXES
from .errors import MidlevelError
from .ioutil import atomic_path, input_file_problem, output_path_problem
from .model import AudioModel, TwoStageModel
from .results import Explanation, Prediction

#: a list of files: a table with one of FILE_COLUMNS
LIST_SUFFIXES = (".csv", ".parquet")
FILE_COLUMNS = ("file", "path", "filename")
TABLE_SUFFIXES = {".parquet": "parquet", ".csv": "csv"}
ENGINES = ("local", "ray")
RUNTIMES = ("torch", "onnxruntime")
#: a part file is written after this many files or this many seconds, whichever comes first
PART_ROWS = 256
PART_SECONDS = 30.0
PARTS_FORMAT = 1
_GLOB_CHARS = re.compile(r"[*?[]")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class AnnotateError(MidlevelError, ValueError):
    """An annotation run that cannot start (or go on); the message names the option or path."""


# -- inputs ------------------------------------------------------------------------------------------

def is_uri(text: str) -> bool:
    return bool(_URI.match(text))


def expand_inputs(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    """The files to annotate, in order, each once (module docstring); refuses a glob that matches
    nothing and a list it cannot read."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found: list[str] = []
    for item in inputs:
        text = os.fspath(item)
        path = Path(text)
        if is_uri(text):
            found += _expand_uri(text)
        elif path.is_dir():
            found += _audio_files(text)
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            found += _read_list(path)
        elif _GLOB_CHARS.search(text) and not path.exists():
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise AnnotateError(f"{text}: matches no file")
            for match in matches:
                if os.path.isdir(match):
                    found += _audio_files(match)
                elif match.lower().endswith(AUDIO_SUFFIXES):
                    found.append(match)
        else:
            found.append(text)
    seen: set[str] = set()
    unique = []
    for text in found:
        key = text if is_uri(text) else os.path.abspath(text)
        if key not in seen:
            seen.add(key)
            unique.append(text)
    return unique


def _audio_files(folder: str) -> list[str]:
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files += [os.path.join(root, n) for n in names
                  if not n.startswith(".") and n.lower().endswith(AUDIO_SUFFIXES)]
    return sorted(files)


def _read_list(path: Path) -> list[str]:
    """The file column of a CSV or Parquet list, relative entries joined to the list's folder."""
    from .datasets.errors import DatasetError

    if path.suffix.lower() == ".parquet":
        require("pyarrow", "annotate", f"reading the list {path}")
        import pandas as pd

        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow's errors are not ours to name; the file is the user's
            raise DatasetError(path, f"cannot read as Parquet ({type(exc).__name__}: {exc})") from None
        columns = [c for c in frame.columns if str(c).strip().lower() in FILE_COLUMNS]
        if len(columns) != 1:
            raise DatasetError(path, ("has several file columns " if columns else "has no 'file' column ")
                               + f"(one of {', '.join(FILE_COLUMNS)}); found {list(map(str, frame.columns))}")
        cells = frame[columns[0]].tolist()
        lines = [None] * len(cells)
        column = str(columns[0])
    else:
        from .datasets.errors import read_table

        table = read_table(path)
        columns = [c for c in FILE_COLUMNS if c in table.names]
        if len(columns) != 1:
            raise DatasetError(path, ("has several file columns " if columns else "has no 'file' column ")
                               + f"(one of {', '.join(FILE_COLUMNS)}); found {table.raw}", line=table.header_line)
        index = table.names.index(columns[0])
        cells = [row[index] for row in table.rows]
        lines = table.lines
        column = table.raw[index]
    entries = []
    for cell, line in zip(cells, lines):
        if cell is None or (isinstance(cell, float) and math.isnan(cell)) or not str(cell).strip():
            raise DatasetError(path, "empty file cell", line=line, column=column)
        text = str(cell).strip()
        entries.append(text if is_uri(text) or os.path.isabs(text) else os.path.join(path.parent, text))
    return entries


def _filesystem(uri: str):
    fs = require("pyarrow.fs", "annotate", f"reading {uri.split('://')[0]}:// inputs")
    try:
        return fs, *fs.FileSystem.from_uri(uri)
    except Exception as exc:  # unknown scheme, no credentials, ...
        raise AnnotateError(f"{uri}: cannot open its filesystem ({exc})") from None


def _expand_uri(uri: str) -> list[str]:
    fs, filesystem, path = _filesystem(uri)
    info = filesystem.get_file_info(path)
    if info.type != fs.FileType.Directory:
        return [uri]  # a file, or a missing one (reported in the errors table)
    base = uri.rstrip("/")
    found = []
    for entry in filesystem.get_file_info(fs.FileSelector(path, recursive=True)):
        rel = PurePosixPath(entry.path).relative_to(PurePosixPath(info.path))
        if entry.type == fs.FileType.File and entry.path.lower().endswith(AUDIO_SUFFIXES) \
                and not any(part.startswith(".") for part in rel.parts):
            found.append(f"{base}/{rel.as_posix()}")
    return sorted(found)


@contextlib.contextmanager
def _local_copy(uri: str) -> Iterator[str]:
    """A temporary local copy of the file at ``uri`` (same suffix, so the decoder sees the format)."""
    _, filesystem, path = _filesystem(uri)
    fd, tmp = tempfile.mkstemp(prefix="midlevel-annotate-", suffix=PurePosixPath(path).suffix)
    try:
        with os.fdopen(fd, "wb") as dst, filesystem.open_input_stream(path) as src:
            shutil.copyfileobj(src, dst, 1 << 20)
        yield tmp
    finally:
        os.unlink(tmp)


# -- one file -> one row -----------------------------------------------------------------------------

def table_columns(model: AudioModel) -> list[str]:
    """The output table's columns for ``model``, in order (module docstring)."""
    targets = list(model.config.target_names)
    columns = ["path", "model", "weights_sha256", "duration_s", "n_windows", "flags", "ood_score"]
    if isinstance(model, TwoStageModel):
        concepts = list(model.config.concept_names)
        columns += [f"concept.{c}" for c in concepts] + [f"target.{t}" for t in targets]
        columns += [f"intercept.{t}" for t in targets] + [f"contrib.{t}.{c}" for t in targets for c in concepts]
    else:
        columns += [f"target.{t}" for t in targets]
    return columns + ["notes", "runtime"]


def table_row(result: Prediction, path: str, weights_sha256: str, runtime: str = "torch") -> dict[str, Any]:
    """One output row from an explanation (or a black box's prediction) that ``runtime`` computed."""
    row: dict[str, Any] = {
        "path": path, "model": result.model_name, "weights_sha256": weights_sha256,
        "duration_s": float(result.duration), "n_windows": int(len(result.window_starts)),
        "flags": ",".join(result.flags()),
        "ood_score": math.nan if result.ood_score is None else float(result.ood_score),
    }
    row.update({f"concept.{c}": float(v) for c, v in zip(result.concept_names, result.concepts)})
    row.update({f"target.{t}": float(v) for t, v in zip(result.target_names, result.targets)})
    if isinstance(result, Explanation):
        row.update({f"intercept.{t}": float(v) for t, v in zip(result.target_names, result.intercept)})
        row.update({f"contrib.{t}.{c}": float(result.contributions[i, j])
                    for i, t in enumerate(result.target_names) for j, c in enumerate(result.concept_names)})
    row["notes"] = " | ".join(result.notes)
    row["runtime"] = runtime
    return row


def annotate_one(model: AudioModel, path: str, weights_sha256: str, window_network=None) -> dict[str, Any]:
    """``{"path", "row"}`` for a file the model read, ``{"path", "error"}`` (one line) for one it could not.
    Never raises for a bad file: at catalogue scale one odd file must not end the run. ``window_network``: an
    ``OnnxWindowNetwork`` of ``model`` (the onnxruntime runtime), or None (torch)."""
    local = path
    try:
        with (_local_copy(path) if is_uri(path) else contextlib.nullcontext(path)) as local:
            if not is_uri(path) and (problem := input_file_problem(path)):
                return {"path": path, "error": problem.replace("not a file", "not an audio file")}
            explain = model.explain if isinstance(model, TwoStageModel) else model.predict
            runtime = "torch" if window_network is None else "onnxruntime"
            return {"path": path, "row": table_row(explain(local, window_network=window_network), path,
                                                   weights_sha256, runtime)}
    except (MidlevelError, OSError) as exc:
        reason = str(exc).strip() or type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - a decoder's or a bug's error on one file, recorded, not fatal
        reason = f"unexpected {type(exc).__name__}: {exc}"
    reason = reason.splitlines()[0].replace(str(local), path)  # a URI's temporary copy: named by its URI
    return {"path": path, "error": reason.removeprefix(f"{path}: ")}  # the path has its own column


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread inside the block (every worker's setting), restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# -- the model ---------------------------------------------------------------------------------------

def resolve_model(model: str | os.PathLike | None) -> tuple[Any, str]:
    """What every worker loads (a zoo entry as ``zoo:NAME`` of the installed entry, a folder as an absolute
    path, None for the default) and the sha256 of its weights ("" for the untrained stand-in default)."""
    from .zoo import DEFAULT_MODEL, installed_entry, resolve, weights_sha256

    if model is None:
        if DEFAULT_MODEL is None:
            return None, ""
        model = DEFAULT_MODEL
    target = resolve(model if isinstance(model, (str, Path)) else Path(model))
    if isinstance(target, Path):
        spec = target.expanduser().resolve()
        return spec, weights_sha256(spec)
    entry = installed_entry(target)  # a superseded entry: its successor, with the zoo's warning, once
    return f"zoo:{entry.name}", entry.sha256


def _load(spec) -> AudioModel:
    from .zoo import load

    return load(spec)


@dataclass(frozen=True)
class WorkerModel:
    """What every worker needs to compute rows: the model to load (``resolve_model``), its weights' sha256 and,
    for the onnxruntime runtime, the per-window graph built once by the parent (``onnx_runtime.window_graph``)."""

    spec: Any
    weights_sha256: str
    graph: bytes | None = None

    def window_network(self, model: AudioModel):
        """The per-window network a worker passes to ``explain``: None for torch, else a one-thread session."""
        if self.graph is None:
            return None
        from .onnx_runtime import OnnxWindowNetwork

        return OnnxWindowNetwork(model, graph=self.graph, threads=1)

    def annotator(self, model: AudioModel | None = None) -> Callable[[str], dict[str, Any]]:
        """path -> record, with ``model`` (loaded from ``spec`` when None) and its window network."""
        model = _load(self.spec) if model is None else model
        network = self.window_network(model)
        return lambda path: annotate_one(model, path, self.weights_sha256, network)


# -- part files --------------------------------------------------------------------------------------

class PartStore:
    """``OUT.parts/``: a manifest naming the model, and JSON-lines part files written atomically."""

    def __init__(self, out: Path, model_name: str, weights_sha256: str, runtime: str = "torch") -> None:
        self.dir = Path(f"{out}.parts")
        self.manifest = {"format": PARTS_FORMAT, "model": model_name, "weights_sha256": weights_sha256,
                         "runtime": runtime}
        self._lock = None

    def __enter__(self) -> "PartStore":
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.dir / ".lock", "w")  # noqa: SIM115 - held for the whole run
        try:
            import fcntl

            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # not on this platform: no lock
            pass
        except OSError:
            self._lock.close()
            raise AnnotateError(f"{self.dir}: another annotate run is writing here (locked); wait for it "
                                "or stop it") from None
        manifest = self.dir / "manifest.json"
        if manifest.exists():
            found = {"runtime": "torch", **json.loads(manifest.read_text(encoding="utf-8"))}  # runs before runtimes
            if found != self.manifest:
                self._lock.close()
                raise AnnotateError(
                    f"{self.dir} holds the parts of an unfinished run of {found.get('model')} (weights "
                    f"{str(found.get('weights_sha256'))[:12]}, runtime {found.get('runtime')}), not "
                    f"{self.manifest['model']} (weights {self.manifest['weights_sha256'][:12]}, runtime "
                    f"{self.manifest['runtime']}): rerun with that model and runtime to finish it, or delete "
                    f"{self.dir} to start over")
        else:
            with atomic_path(manifest) as tmp:
                tmp.write_text(json.dumps(self.manifest) + "\n", encoding="utf-8")
        for stale in self.dir.glob(".part-*.tmp"):  # a write that a kill interrupted
            stale.unlink(missing_ok=True)
        return self

    def __exit__(self, *exc) -> None:
        if self._lock is not None:
            self._lock.close()

    def _parts(self) -> list[Path]:
        return sorted(self.dir.glob("part-*.jsonl"))

    def read(self) -> dict[str, dict[str, Any]]:
        """Every record written so far, by path (the first one where a path was written twice)."""
        records: dict[str, dict[str, Any]] = {}
        for part in self._parts():
            for line in part.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                records.setdefault(record["path"], record)
        return records

    def write(self, records: list[dict[str, Any]]) -> None:
        parts = self._parts()
        number = int(parts[-1].stem.split("-")[1]) + 1 if parts else 0
        with atomic_path(self.dir / f"part-{number:06d}.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")

    def remove(self) -> None:
        """Out of the way in one rename (a rerun never sees half of it), then deleted."""
        gone = self.dir.with_name(f".{self.dir.name}.done-{os.getpid()}")
        os.replace(self.dir, gone)
        shutil.rmtree(gone, ignore_errors=True)


# -- engines -----------------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(job: WorkerModel) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (it stops us)
    torch.set_num_threads(1)
    _WORKER["annotate"] = job.annotator()


def _worker_annotate(path: str) -> dict[str, Any]:
    return _WORKER["annotate"](path)


#: a worker that dies while reading files (the kernel's out-of-memory killer, a crash in a decoder) costs the
#: pool; it is restarted this many times before the run stops (each time the files in flight are re-read alone)
POOL_RESTARTS = 8
DIED = "the worker process died while reading it (out of memory, or a crash in a decoder)"


def _spawn_pool(workers: int, job: WorkerModel) -> ProcessPoolExecutor:
    import multiprocessing

    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(job,))


def _stop(pool: ProcessPoolExecutor, pending, *, now: bool = True) -> None:
    """Shut ``pool`` down; ``now``: cancel what is pending and end its workers mid-file (Ctrl-C, a dead worker,
    a caller that stopped reading), rather than let them finish."""
    if now:
        for future in pending:
            future.cancel()
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def _alone(job: WorkerModel, path: str) -> dict[str, Any]:
    """``path`` read by a fresh worker of its own: its record, or an error record when that worker dies too."""
    pool = _spawn_pool(1, job)
    try:
        return pool.submit(_worker_annotate, path).result()
    except BrokenProcessPool:
        return {"path": path, "error": DIED}
    finally:
        _stop(pool, [])


def local_records(model: AudioModel, job: WorkerModel, paths: Sequence[str], workers: int
                  ) -> Iterator[dict[str, Any]]:
    """Records of ``paths`` in the order they finish: in this process (``workers=1``, ``model``) or in a
    pool of spawned processes that each load ``job.spec`` once.

    When a worker dies, every file then in flight is read again by a worker of its own: those that kill it
    too get an error record (``DIED``), the others their rows, and a new pool goes on with the rest; after
    ``POOL_RESTARTS`` deaths the run stops (the rows done so far are kept)."""
    if workers <= 1:
        with one_thread():
            annotate_path = job.annotator(model)
            for path in paths:
                yield annotate_path(path)
        return
    pool = _spawn_pool(workers, job)
    pending: dict[Any, str] = {}
    todo = iter(paths)
    restarts, finished = 0, False
    try:
        while True:
            broken = False
            while len(pending) < 2 * workers and (path := next(todo, None)) is not None:
                try:
                    pending[pool.submit(_worker_annotate, path)] = path
                except BrokenProcessPool:  # a worker died after the last wait: this file was never sent
                    todo, broken = itertools.chain([path], todo), True
                    break
            if not pending and not broken:
                break
            if not broken:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                broken = any(isinstance(f.exception(), BrokenProcessPool) for f in done)
            # rows that finished keep their record; when the pool broke, the rest in flight are suspects
            for future in [f for f in pending if f.done() and not isinstance(f.exception(), BrokenProcessPool)]:
                pending.pop(future)
                yield future.result()  # a worker's own error (not a death) is raised here, as from one process
            if broken:
                suspects = sorted(set(pending.values()))
                _stop(pool, pending)
                pending = {}
                restarts += 1
                if restarts > POOL_RESTARTS:
                    raise AnnotateError(
                        f"worker processes died {restarts} times (out of memory, or a crash in a decoder), last "
                        f"while reading one of: {', '.join(suspects) or 'no file (between files)'}; the rows done "
                        f"so far are kept, rerun to go on")
                for path in suspects:
                    yield _alone(job, path)
                pool = _spawn_pool(workers, job)
        finished = True
    finally:
        _stop(pool, pending, now=not finished)


class RayAnnotator:
    """Ray Data's callable class: one model per actor, loaded once; a batch of paths -> JSON records
    (strings, so the batches' schema does not depend on which files failed)."""

    def __init__(self, job: WorkerModel) -> None:
        torch.set_num_threads(1)
        self.annotate = job.annotator()

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        records = [self.annotate(str(p)) for p in batch["path"]]
        return {"record": [json.dumps(r) for r in records]}


def ray_records(job: WorkerModel, paths: Sequence[str], workers: int | None, info: dict[str, Any]
                ) -> Iterator[dict[str, Any]]:
    """Records of ``paths`` from a Ray Data actor pool (``workers`` actors of one CPU; None: one per CPU of
    the cluster). Uses the Ray instance this process has, else ``ray.init()`` (which joins ``RAY_ADDRESS``
    when set, else starts a local instance, shut down at the end)."""
    ray = require("ray", "ray", "midlevel annotate --engine ray")
    require("ray.data", "ray", "midlevel annotate --engine ray")
    started = not ray.is_initialized()
    if started:
        ray.init(include_dashboard=False, logging_level=logging.WARNING)
    context = ray.data.DataContext.get_current()
    bars, context.enable_progress_bars = context.enable_progress_bars, False  # ours is the one bar
    quiet = logging.getLogger("ray.data")
    level = quiet.level
    quiet.setLevel(max(level, logging.WARNING))
    try:
        size = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        info["workers"] = size
        data = ray.data.from_items([{"path": p} for p in paths])
        data = data.map_batches(RayAnnotator, fn_constructor_args=(job,), batch_size=1,
                                batch_format="numpy", num_cpus=1, compute=ray.data.ActorPoolStrategy(size=size))
        for row in data.iter_rows():
            yield json.loads(row["record"])
    finally:
        context.enable_progress_bars = bars
        quiet.setLevel(level)
        if started:
            ray.shutdown()


# -- the run -----------------------------------------------------------------------------------------

def table_format(path: Path, option: str) -> str:
    try:
        return TABLE_SUFFIXES[path.suffix.lower()]
    except KeyError:
        raise AnnotateError(f"{option} {path}: the table's format is chosen by its suffix: .parquet or .csv") from None


def errors_path(out: str | os.PathLike) -> Path:
    """The errors table beside ``out``: ``table.parquet`` -> ``table.errors.parquet``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.errors{out.suffix}")


def write_table(frame, path: Path) -> None:
    with atomic_path(path) as tmp:
        if table_format(path, "") == "parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)


def _progress(progress: bool | None, total: int, initial: int):
    import sys

    if progress is None:
        try:
            import tqdm  # noqa: F401
        except ImportError:
            progress = False
        else:
            progress = sys.stderr.isatty()
    if not progress:
        return contextlib.nullcontext(None)
    tqdm = require("tqdm", "annotate", "the progress bar of midlevel annotate")
    return tqdm.tqdm(total=total, initial=initial, unit="file", desc="annotate", dynamic_ncols=True)


def annotate(inputs: str | os.PathLike | Iterable[str | os.PathLike], out: str | os.PathLike, *,
             model: str | os.PathLike | None = None, workers: int | None = None, engine: str = "local",
             runtime: str = "torch", errors: str | os.PathLike | None = None, progress: bool | None = None,
             part_rows: int = PART_ROWS, part_seconds: float = PART_SECONDS) -> dict[str, Any]:
    """Annotate every input file into the table ``out`` (module docstring); returns a summary (counts,
    where the tables are, model, weights, engine, workers, seconds, audio seconds, the first failures).

    ``workers``: processes (local; default 1) or actors (ray; default every CPU of the cluster).
    ``runtime``: ``torch`` or ``onnxruntime`` (the per-window network; module docstring).
    ``errors``: the errors table (default ``errors_path(out)``). ``progress``: a tqdm bar on standard
    error (None: when it is a terminal).
    """
    import pandas as pd

    started_at = time.perf_counter()
    if engine not in ENGINES:
        raise AnnotateError(f"--engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if runtime not in RUNTIMES:
        raise AnnotateError(f"--runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
    if workers is not None and workers < 1:
        raise AnnotateError(f"--workers {workers}: need at least 1")
    if part_rows < 1:
        raise AnnotateError(f"part_rows {part_rows}: need at least 1")
    out = Path(out)
    errors_out = Path(errors) if errors is not None else errors_path(out)
    formats = {table_format(out, "--out"), table_format(errors_out, "--errors")}
    if errors_out.resolve() == out.resolve():
        raise AnnotateError(f"--errors {errors_out}: is the --out table; give another file")
    for option, path in (("--out", out), ("--errors", errors_out)):
        if problem := output_path_problem(path):
            raise AnnotateError(f"{option} {path}: {problem}")
    if "parquet" in formats:
        require("pyarrow", "annotate", "midlevel annotate (Parquet tables)")
    if engine == "ray":
        require("ray", "ray", "midlevel annotate --engine ray")
    if runtime == "onnxruntime":
        require_all(("onnx", "onnxscript", "onnxruntime"), "onnx", "midlevel annotate --runtime onnxruntime")
    paths = expand_inputs(inputs)
    if not paths:
        raise AnnotateError(f"no audio files in the inputs (looked for {', '.join(AUDIO_SUFFIXES)})")
    spec, sha256 = resolve_model(model)
    loaded = _load(spec)
    columns = table_columns(loaded)
    info: dict[str, Any] = {"workers": workers or 1}
    with PartStore(out, loaded.name, sha256, runtime) as store:
        done = store.read()
        todo = [p for p in paths if p not in done]
        resumed = len(paths) - len(todo)
        if todo:
            job = WorkerModel(spec, sha256)
            if runtime == "onnxruntime":  # built (or read from the cache) once here, handed to every worker
                from .onnx_runtime import cached_window_graph

                job = WorkerModel(spec, sha256, cached_window_graph(loaded))
            if engine == "ray":
                source = ray_records(job, todo, workers, info)
            else:
                source = local_records(loaded, job, todo, workers or 1)
            with _progress(progress, len(paths), resumed) as bar:
                buffer: list[dict[str, Any]] = []
                flushed = time.monotonic()
                try:
                    for record in source:
                        buffer.append(record)
                        if bar is not None:
                            bar.update(1)
                        if len(buffer) >= part_rows or time.monotonic() - flushed >= part_seconds:
                            store.write(buffer)
                            buffer, flushed = [], time.monotonic()
                finally:
                    source.close()  # stops the workers first when we got here by an exception
                    if buffer:  # Ctrl-C included: what came back is kept
                        store.write(buffer)
            done = store.read()
        records = [done[p] for p in paths]
        rows = [r["row"] for r in records if "row" in r]
        failures = [{"path": r["path"], "reason": r["error"]} for r in records if "error" in r]
        write_table(pd.DataFrame(rows, columns=columns), out)
        write_table(pd.DataFrame(failures, columns=["path", "reason"]), errors_out)
        store.remove()
    return {"inputs": len(paths), "annotated": len(rows), "failed": len(failures), "resumed": resumed,
            "out": str(out), "errors_out": str(errors_out), "model": loaded.name, "weights_sha256": sha256,
            "engine": engine, "runtime": runtime, "workers": info["workers"],
            "seconds": time.perf_counter() - started_at, "audio_seconds": float(sum(r["duration_s"] for r in rows)),
            "failures": failures[:20]}


__all__ = ["AUDIO_SUFFIXES", "AnnotateError", "ENGINES", "PartStore", "RUNTIMES", "WorkerModel", "annotate",
           "annotate_one", "errors_path", "expand_inputs", "local_records", "ray_records", "resolve_model",
           "table_columns", "table_row"]
