"""Phase-vocoder variants of a built corpus: pitch shifts, time stretches and shift-and-back round trips.

Why (issue 30, third attempt): on recorded music the models barely hear a transposition or a time
stretch made by a phase vocoder (register rises on about half the excerpts, tempo follows the stretch
factor at a rank correlation near 0.4), and a shift-and-back round trip alone moves the mode concepts
by 0.4 sd. Transposing cached spectrograms (``training.augment``) teaches what a *clean* shift does; it
cannot teach what a vocoder does to a mix (smeared onsets, phasey partials, moved formants). So this
module writes real vocoder output into a corpus, with the labels moved as the corpus defines them:

- **shift** by k semitones (k in +-1..``max_semitones``): ``transpose`` += k, so ``register`` moves
  9/24 per semitone; no mid-level rating changes (they are all relative to the key).
- **stretch** by a factor f (log-uniform in 1/``max_stretch``..``max_stretch``; f > 1 is faster):
  ``tempo_bpm`` *= f; the melody's notes per second (``m_notes_per_s``) *= f, which moves melodiousness
  through its raw score's notes-per-second term. A slowed clip is cut to the clip's length; a faster
  one is continued by playing its stretched audio again from the start (a loop: the pulse goes on, with
  one jump of phase). Ratings are those of the whole source clip, so the cut or the loop adds a little
  label noise to the rest (documented in docs/recording_conditions.md).
- **round trip**: shifted by k and back by -k. No label moves: it teaches the vocoder's artefacts alone.

The vocoder is Rubber Band (through pedalboard's ``time_stretch``), with formant preservation drawn per
clip; the real-recordings benchmark shifts and stretches with librosa's phase vocoder, so the network is
never trained on the tool it is measured with. Emotions move by the corpus's own formula
(``ground_truth.json``: the register and tempo terms and the melodiousness weight), clipped to 1-9.

Only training clips get variants (new song ids after the source's, same piece and split), so validation
and test stay the source's clips and scores stay comparable. The source's audio is linked, not copied.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ...ioutil import atomic_path, atomic_write_text
from ..controlled_labels import OUTSIDE_RANGES
from .ratings import RATING_MAPS, to_scale

KINDS = ("shift", "stretch", "round_trip")


def _rubberband(x: np.ndarray, sr: int, *, stretch: float = 1.0, semitones: float = 0.0, formants: bool = True
                ) -> np.ndarray:
    import pedalboard

    return pedalboard.time_stretch(x.astype(np.float32)[None], float(sr), stretch_factor=float(stretch),
                                   pitch_shift_in_semitones=float(semitones), preserve_formants=formants)[0]


def fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """``y`` cut to ``n`` samples, or continued by repeating it from its start (a faster clip's loop)."""
    if len(y) >= n:
        return y[:n]
    reps = int(math.ceil(n / max(len(y), 1)))
    return np.tile(y, reps)[:n]


def draw_variant(rng: np.random.Generator, transpose: float, tempo_bpm: float, *, max_semitones: int,
                 max_stretch: float) -> dict:
    """One clip's variant: kind, semitones, stretch and formant preservation, drawn so that the moved
    ``transpose`` and ``tempo_bpm`` stay inside the corpus's rating ranges (every draw is made)."""
    kind = KINDS[int(rng.integers(len(KINDS)))]
    lo, hi = OUTSIDE_RANGES["register"]
    steps = [k for k in range(-max_semitones, max_semitones + 1) if k != 0]
    if kind == "shift":
        steps = [k for k in steps if lo <= transpose + k <= hi]
    k = int(steps[int(rng.integers(len(steps)))])
    tlo, thi = OUTSIDE_RANGES["tempo"]
    room_lo = max(-math.log(max_stretch), tlo - math.log(tempo_bpm))
    room_hi = min(math.log(max_stretch), thi - math.log(tempo_bpm))
    f = float(math.exp(rng.uniform(room_lo, room_hi)))
    formants = bool(rng.random() < 0.5)
    if kind == "stretch":
        return {"kind": kind, "semitones": 0, "stretch": f, "formants": formants}
    return {"kind": kind, "semitones": k, "stretch": 1.0, "formants": formants}


def render_variant(x: np.ndarray, sr: int, v: dict) -> np.ndarray:
    if v["kind"] == "shift":
        y = _rubberband(x, sr, semitones=v["semitones"], formants=v["formants"])
    elif v["kind"] == "stretch":
        y = _rubberband(x, sr, stretch=v["stretch"], formants=v["formants"])
    else:
        y = _rubberband(_rubberband(x, sr, semitones=v["semitones"], formants=v["formants"]), sr,
                        semitones=-v["semitones"], formants=v["formants"])
    return np.clip(fit_length(y, len(x)), -1.0, 1.0).astype(np.float32)


def moved_record(record: dict, v: dict, song_id: int, truth: dict) -> dict:
    """The source clip's record with the labels the variant moves moved (module docstring)."""
    r = copy.deepcopy(record)
    r["song_id"] = int(song_id)
    r["source_song_id"] = int(record["song_id"])
    fac = r["factors"]
    transformed = lambda spec: (math.log(float(fac[spec["factor"]])) if spec["transform"] == "log"  # noqa: E731
                                else float(fac[spec["factor"]]))
    old_x = {name: transformed(spec) for name, spec in truth["outside_terms"].items()}
    if v["kind"] == "shift":
        fac["transpose"] = int(fac["transpose"]) + int(v["semitones"])
    delta_z = {}
    if v["kind"] == "stretch":
        f = float(v["stretch"])
        fac["tempo_bpm"] = float(fac["tempo_bpm"]) * f
        nps = float(r["measures"]["notes_per_s"])
        term = lambda n: -0.15 * float(np.clip((n - 5.0) / 5.0, 0.0, 1.0))  # noqa: E731  ratings.raw_scores's term
        r["measures"]["notes_per_s"] = nps * f
        r["raw"]["melodiousness"] = float(r["raw"]["melodiousness"]) + term(nps * f) - term(nps)
        old = float(r["ratings"]["melodiousness"])
        r["ratings"]["melodiousness"] = to_scale(r["raw"]["melodiousness"], "melodiousness")
        delta_z["melodiousness"] = (r["ratings"]["melodiousness"] - old) / truth["rating_sd"]["melodiousness"]
    new_x = {name: transformed(spec) for name, spec in truth["outside_terms"].items()}
    lo, hi = truth["clip"]
    for e in truth["emotions"]:
        d = sum(truth["W"][j][e] * dz for j, dz in delta_z.items())
        d += sum(spec["B"][e] * (new_x[o] - old_x[o]) / spec["sd"] for o, spec in truth["outside_terms"].items())
        r["emotions"][e] = float(np.clip(float(r["emotions"][e]) + d, lo, hi))
    r["conditions"] = {**r.get("conditions", {}), **vocoder_fields(v)}
    return r


def vocoder_fields(v: dict | None) -> dict:
    if v is None:
        return {"vocoder": "none", "vocoder_semitones": 0, "vocoder_stretch": 1.0, "vocoder_formants": 0}
    return {"vocoder": v["kind"], "vocoder_semitones": int(v["semitones"]), "vocoder_stretch": float(v["stretch"]),
            "vocoder_formants": int(v["formants"])}


def build_vocoded_corpus(source: str | Path, out: str | Path, *, seed: int = 0, max_semitones: int = 4,
                         max_stretch: float = 1.4, share: float = 1.0, progress: bool = True) -> dict:
    """Write ``out``: every clip of ``source`` (audio linked) plus one vocoder variant of a ``share`` of its
    training clips. Resumable: a variant whose audio exists is not rendered again; the tables are written
    last, atomically. Deterministic for a seed (each clip draws from ``default_rng([seed, song_id])``)."""
    import soundfile as sf

    from .build import CorpusBuildError, _progress, _tables

    if not 0.0 < share <= 1.0:
        raise CorpusBuildError(f"--share must be in (0, 1]; got {share}")
    if max_semitones < 1 or not max_stretch >= 1.0:
        raise CorpusBuildError(f"--max-semitones must be >= 1 and --max-stretch >= 1; got {max_semitones}, {max_stretch}")
    source, out = Path(source).resolve(), Path(out)
    missing = [name for name in ("corpus.json", "ground_truth.json", "records", "audio") if not (source / name).exists()]
    if missing:
        raise CorpusBuildError(f"{source}: not a built controlled corpus (no {', '.join(missing)}); "
                               "build one with `midlevel corpus build`")
    if out.resolve() == source:
        raise CorpusBuildError(f"--out {out}: is the source corpus; write the variants to a new folder")
    meta = json.loads((source / "corpus.json").read_text())
    truth = json.loads((source / "ground_truth.json").read_text())
    sr = int(meta["settings"]["sample_rate"])
    ext = meta["settings"].get("audio_format", "flac")
    records = [json.loads(p.read_text()) for p in (source / "records").glob("*.json")]
    records.sort(key=lambda r: int(r["song_id"]))
    (out / "audio").mkdir(parents=True, exist_ok=True)
    (out / "records").mkdir(exist_ok=True)
    (out / "metadata_annotations").mkdir(exist_ok=True)
    first_new = max(int(r["song_id"]) for r in records) + 1
    chosen = []
    for r in records:
        rng = np.random.default_rng([int(seed), int(r["song_id"])])
        if r["split"] == "train" and rng.random() < share:
            v = draw_variant(rng, float(r["factors"]["transpose"]), float(r["factors"]["tempo_bpm"]),
                             max_semitones=max_semitones, max_stretch=max_stretch)
            chosen.append((r, v))
    every = []
    for r in records:
        link = out / "audio" / f"{r['song_id']}.{ext}"
        if not link.exists():
            link.symlink_to(source / "audio" / f"{r['song_id']}.{ext}")
        every.append({**r, "conditions": {**r.get("conditions", {}), **vocoder_fields(None)}})
    bar = _progress(len(chosen), 0, progress, desc="vocoder variants")
    for n, (r, v) in enumerate(chosen):
        sid = first_new + n
        path = out / "audio" / f"{sid}.{ext}"
        if not path.exists():
            x, file_sr = sf.read(source / "audio" / f"{r['song_id']}.{ext}", dtype="float32")
            y = render_variant(x if x.ndim == 1 else x.mean(axis=1), file_sr, v)
            with atomic_path(path) as tmp:  # the temporary name has no audio extension: say the format
                sf.write(tmp, y, file_sr, format=ext.upper())
        moved = moved_record(r, v, sid, truth)
        atomic_write_text(out / "records" / f"{sid}.json", json.dumps(moved, sort_keys=True))
        every.append(moved)
        bar.update(1)
    bar.close()
    for name, text in _tables(every, SimpleNamespace(seconds=meta["settings"]["seconds"])).items():
        atomic_write_text(out / name, text)
    atomic_write_text(out / "ground_truth.json", (source / "ground_truth.json").read_text(encoding="utf-8"))
    kinds = {k: sum(v["kind"] == k for _, v in chosen) for k in KINDS}
    summary = {**meta, "n": len(every), "derived_from": str(source),
               "vocoder": {"tool": "rubberband (pedalboard.time_stretch)", "seed": seed, "max_semitones": max_semitones,
                           "max_stretch": max_stretch, "share": share, "variants": kinds, "first_song_id": first_new}}
    atomic_write_text(out / "corpus.json", json.dumps(summary, indent=2, sort_keys=True))
    return summary

