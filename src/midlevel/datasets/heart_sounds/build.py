"""Build the controlled phonocardiogram corpus in the PhysioNet/CinC 2016 layout, so that
``midlevel.datasets.load_physionet2016`` reads it as it reads the Challenge's recordings.

Recording ``i`` belongs to simulated database ``DATABASES[i % 6]`` (``training-a`` ... ``training-f``, each
with its own share of pathology, mix of condition levels and stethoscope, as the Challenge's databases
differ in patients and devices) and is named like the Challenge's (``a0001``, ``b0001``, ..., ``a0002``).
Its random numbers come from ``default_rng([seed, i, stream])``, so a recording never depends on which
others were built:

| stream | what |
|---|---|
| 0 | the patient (``physiology.draw_patient``) |
| 1 | the beats (``physiology.draw_beats``) |
| 2 | the label noise (one uniform draw) |
| 3 | the recording conditions (``conditions.sample_conditions``) |
| 4 | the added sounds (``conditions.apply_conditions``) |
| 10 + k | rendering of ``physiology.COMPONENTS[k]`` |

The label follows ``physiology.ABNORMAL_RULES`` on the recording's concepts; then a share ``label_noise``
of the labels is flipped (``label_flipped``), as experts' labels are sometimes wrong.
``draw_record`` makes every draw but renders nothing, so labels can be studied by the thousand.

Layout::

    <out>/training-a/a0001.wav         2000 Hz, 16-bit PCM, mono
    <out>/training-a/a0001.hea         'a0001 1 2000 30000' and a signal line
    <out>/training-a/REFERENCE.csv     'a0001,-1' (no header): -1 normal, 1 abnormal (after label noise)
    <out>/training-a/REFERENCE-SQI.csv 'a0001,1': quality 1 where snr_db >= SQI_MIN_SNR_DB, else 0
    <out>/concepts.csv                 one row per recording: label, rules met, concepts, conditions (cond_*)
    <out>/segments/a0001.csv           per beat: S1/systole/S2/diastole boundaries (s), A2/P2/S3/S4 onsets
    <out>/build.json                   the settings

Resumable: each recording's row (``rows/<name>.json``) is written last, atomically, after its files; a rerun
skips recordings with a row and rewrites the tables. Deterministic: the same settings give the same bytes.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...errors import MidlevelError
from ...ioutil import atomic_path, atomic_write_text
from .conditions import BANDS, LEVELS, PcgConditions, apply_conditions, sample_conditions
from .physiology import (SAMPLE_RATE, Patient, abnormal_rules, concept_values, draw_beats, draw_patient,
                         render_pcg, segments)

#: database -> (chance of a pathology, chances of the clean / moderate / noisy levels, its stethoscope's band);
#: the shares of pathology spread from rare to common as the Challenge's databases' do (there ~7% to ~77%)
DATABASES = {
    "a": (0.7, (0.3, 0.5, 0.2), "electronic"),
    "b": (0.2, (0.1, 0.4, 0.5), "diaphragm"),
    "c": (0.75, (0.5, 0.4, 0.1), "bell"),
    "d": (0.5, (0.3, 0.5, 0.2), "electronic"),
    "e": (0.1, (0.4, 0.4, 0.2), "none"),
    "f": (0.3, (0.2, 0.5, 0.3), "diaphragm"),
}
OWN_BAND = 0.8  # the chance a recording uses its database's stethoscope (else one of BANDS at random)
LABEL_NOISE = 0.05
SQI_MIN_SNR_DB = 0.0
SECONDS = 15.0
NOISE_MODES = ("randomised", "clean")


class CorpusSettingsError(MidlevelError, ValueError):
    """Settings that cannot build this corpus (or not into this folder); the message says which."""
#: the concepts of every recording, in concepts.csv's order
CONCEPTS = ("heart_rate_bpm", "hrv_sdnn_ms", "s1_intensity_db", "s2_intensity_db", "s2_split_ms", "systolic_murmur",
            "diastolic_murmur", "s3", "s4", "noise_level")


def record_name(index: int) -> tuple[str, str]:
    """(database, record name) of recording ``index``: a0001, b0001, ..., f0001, a0002, ..."""
    database = list(DATABASES)[index % len(DATABASES)]
    return database, f"{database}{index // len(DATABASES) + 1:04d}"


@dataclass
class Record:
    """Every draw of one recording; ``render`` makes its sound."""

    index: int
    seed: int
    seconds: float
    name: str
    database: str
    patient: Patient
    beats: pd.DataFrame
    concepts: dict[str, Any]
    rules: list[str]
    label_true: int  # -1 normal, 1 abnormal, by the rules
    label_flipped: bool
    conditions: PcgConditions

    @property
    def label(self) -> int:
        return -self.label_true if self.label_flipped else self.label_true

    @property
    def key(self) -> list[int]:
        return [self.seed, self.index]

    def render(self, omit=(), patient: Patient | None = None) -> np.ndarray:
        """The dry heart sounds (no recording conditions); ``omit``/``patient``: see ``physiology.render_pcg``."""
        return render_pcg(patient or self.patient, self.beats, self.seconds, self.key, omit)

    def record(self, dry: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, float]]:
        """The recording as written (conditions applied) and what ``apply_conditions`` measured."""
        dry = self.render() if dry is None else dry
        return apply_conditions(dry, self.conditions, np.random.default_rng([self.seed, self.index, 4]),
                                resp_rate_hz=self.patient.resp_rate_hz, resp_phase=self.patient.resp_phase)


def draw_record(seed: int, index: int, *, noise: str = "randomised", seconds: float = SECONDS,
                label_noise: float = LABEL_NOISE) -> Record:
    """Every draw of recording ``index`` (patient, beats, concepts, label and its noise, conditions);
    renders nothing."""
    if noise not in NOISE_MODES:
        raise CorpusSettingsError(f"noise must be one of {NOISE_MODES}; got {noise!r}")
    database, name = record_name(index)
    prevalence, level_p, own_band = DATABASES[database]
    patient = draw_patient(np.random.default_rng([seed, index, 0]), prevalence)
    beats = draw_beats(patient, seconds, np.random.default_rng([seed, index, 1]))
    concepts = concept_values(patient, beats, seconds)
    rules = abnormal_rules(concepts)
    flipped = bool(np.random.default_rng([seed, index, 2]).random() < label_noise)
    rng = np.random.default_rng([seed, index, 3])
    u = rng.uniform(size=3)
    level = LEVELS[int(np.searchsorted(np.cumsum(level_p), u[0] * sum(level_p), side="right"))]
    band = own_band if u[1] < OWN_BAND else sorted(BANDS)[int(u[2] * len(BANDS))]
    if noise == "clean":
        level, band = "clean", "none"
    conditions = sample_conditions(rng, level, band)
    return Record(index, seed, seconds, name, database, patient, beats, concepts, rules, 1 if rules else -1,
                  flipped, conditions)


def header_text(name: str, n_samples: int) -> str:
    """A WFDB header as the Challenge's: the record line and one PCG signal stored in the wav."""
    return f"{name} 1 {SAMPLE_RATE} {n_samples}\n{name}.wav 16+44 1 16 0 0 0 0 PCG\n"


def _row(r: Record, measured: dict[str, float]) -> dict[str, Any]:
    p = asdict(r.patient)
    lo, hi = p.pop("systolic_band_hz")
    dlo, dhi = p.pop("diastolic_band_hz")
    physiology = {f"p_{k}": (";".join(v) if isinstance(v, (tuple, list)) else v) for k, v in p.items()
                  if k not in r.concepts or k in ("heart_rate_bpm", "hrv_sdnn_ms")}  # the targets of the realised rates
    physiology.update(p_systolic_band_lo_hz=lo, p_systolic_band_hi_hz=hi, p_diastolic_band_lo_hz=dlo,
                      p_diastolic_band_hi_hz=dhi)
    concepts = {**r.concepts, "noise_level": measured["noise_level"]}
    return {
        "name": r.name, "database": r.database, "index": r.index, "label": r.label, "label_true": r.label_true,
        "label_flipped": int(r.label_flipped), "abnormal_rules": ";".join(r.rules),
        "quality": int(measured["snr_db"] >= SQI_MIN_SNR_DB), "seconds": r.seconds,
        **{k: concepts[k] for k in CONCEPTS}, **{k: v for k, v in concepts.items() if k not in CONCEPTS},
        "snr_db": measured["snr_db"], "clipped": measured["clipped"], **physiology,
        **{f"cond_{k}": v for k, v in r.conditions.to_record().items()},
    }


def _build_one(job: tuple) -> str:
    import soundfile as sf

    out, index, seed, noise, seconds, label_noise = job
    out = Path(out)
    database, name = record_name(index)
    row_file = out / "rows" / f"{name}.json"
    if row_file.is_file():
        return "skipped"
    r = draw_record(seed, index, noise=noise, seconds=seconds, label_noise=label_noise)
    audio, measured = r.record()
    folder = out / f"training-{database}"
    with atomic_path(folder / f"{name}.wav") as tmp:
        sf.write(tmp, audio.astype(np.float32), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    atomic_write_text(folder / f"{name}.hea", header_text(name, len(audio)))
    table = segments(r.beats, seconds).to_csv(index=False, float_format="%.4f")
    atomic_write_text(out / "segments" / f"{name}.csv", table)
    row_file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(row_file, json.dumps(_row(r, measured)))
    return "built"


def build_pcg_corpus(out: str | Path, n: int, seed: int = 0, workers: int = 1, noise: str = "randomised", *,
                     seconds: float = SECONDS, label_noise: float = LABEL_NOISE, progress: bool = True
                     ) -> dict[str, Any]:
    """Build (or finish building) ``n`` recordings in ``out``; returns a summary. ``noise="clean"``: every
    recording at the ``clean`` level without band-limiting (same patients, beats and labels as the
    randomised build of the seed). A rerun with a larger ``n`` adds recordings."""
    from tqdm.auto import tqdm

    if noise not in NOISE_MODES:
        raise CorpusSettingsError(f"noise must be one of {NOISE_MODES}; got {noise!r}")
    if n < 1:
        raise CorpusSettingsError(f"n must be at least 1; got {n}")
    if not 5.0 <= seconds <= 120.0:
        raise CorpusSettingsError(f"seconds must be within 5 ... 120 (the Challenge's recordings are 5 s to over "
                                  f"120 s); got {seconds}")
    if not 0.0 <= label_noise < 0.5:
        raise CorpusSettingsError(f"label_noise must be within [0, 0.5); got {label_noise}")
    out = Path(out)
    settings = {"seed": seed, "noise": noise, "seconds": seconds, "label_noise": label_noise,
                "sample_rate": SAMPLE_RATE, "databases": list(DATABASES)}
    build_file = out / "build.json"
    if build_file.is_file():
        before = json.loads(build_file.read_text())
        if {k: v for k, v in before.items() if k != "n"} != settings:
            raise CorpusSettingsError(f"{build_file}: was built with other settings; use a new --out folder")
        if before.get("n", 0) > n:
            raise CorpusSettingsError(f"{out} holds {before['n']} recordings; --n must be at least that")
    settings["n"] = n
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(build_file, json.dumps(settings, indent=1) + "\n")
    jobs = [(str(out), i, seed, noise, seconds, label_noise) for i in range(n)]
    started = time.perf_counter()
    if workers > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            done = list(tqdm(pool.imap_unordered(_build_one, jobs, chunksize=4), total=n, disable=not progress,
                             desc="heart sounds"))
    else:
        done = [_build_one(j) for j in tqdm(jobs, disable=not progress, desc="heart sounds")]
    rows = pd.DataFrame([json.loads((out / "rows" / f"{record_name(i)[1]}.json").read_text()) for i in range(n)])
    for database, part in rows.groupby("database", sort=True):
        folder = out / f"training-{database}"
        atomic_write_text(folder / "REFERENCE.csv", "".join(f"{a},{b}\n" for a, b in zip(part["name"], part["label"])))
        atomic_write_text(folder / "REFERENCE-SQI.csv",
                          "".join(f"{a},{b}\n" for a, b in zip(part["name"], part["quality"])))
    with atomic_path(out / "concepts.csv") as tmp:
        rows.to_csv(tmp, index=False)
    return {"out": str(out), "recordings": n, "built": done.count("built"), "skipped": done.count("skipped"),
            "abnormal": int((rows["label"] == 1).sum()), "flipped": int(rows["label_flipped"].sum()),
            "poor_quality": int((rows["quality"] == 0).sum()),
            "databases": rows["database"].value_counts().sort_index().to_dict(),
            "seconds": time.perf_counter() - started}
