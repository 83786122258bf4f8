"""How the zoo's models behave on recorded music: invariances, equivariances and agreement with peer measurements (issue 30).

    python benchmarks/real_recordings.py [--n 100] [--models NAME,NAME] [--model LABEL=MODEL_DIR ...] [--merge]
                                         [--controlled corpora/heldout] [--out benchmarks/results]

Every shipped model was trained on dry renders of one soundfont; users run them on recordings. This
benchmark takes ``--n`` 10 s excerpts of recorded music from Debian packages (``DEFAULT_PACKAGES``:
orchestral, electronic and ambient game soundtracks; install them with ``apt-get install -y ufoai-music
fb-music-high asc-music planetblupi-music-ogg``), at most one per track unless there are fewer tracks than
excerpts, and measures on each model, with "sd" the standard deviation of a concept's prediction over the
unperturbed excerpts:

1. gain: a -12 dB gain change; mean over excerpts of |concept(perturbed) - concept(original)| / sd, per
   concept and the mean over concepts;
2. codec: a 32 kb/s mono MP3 round trip (libsndfile, constant bit rate), same unit;
3. reverb: a mild reverb (pedalboard ``Reverb(room_size=0.3, wet_level=0.15, dry_level=0.5)``: the dry signal at
   unity gain, so that the reverb does not also turn the level down; the mean level change is recorded), same unit;
4. transposition: +3 semitones (``librosa.effects.pitch_shift``): the share of excerpts whose ``register``
   rises (and, beside it, whose ``register`` is higher after the shift than after the round trip below, both
   through the pitch shifter); the mode-related concepts (minorness, tonal stability, melodiousness,
   dissonance) moved by the shift and by a +3 then -3 round trip (the control for the shift's own
   artefacts), both in sd units;
5. time stretch: factors 0.7, 0.85, 1, 1.2, 1.4 (``librosa.effects.time_stretch``, rate = factor, so 1.4 is
   faster; every stretched version is 10 s long, stretched from the 10 x factor seconds of music that
   follow the excerpt's start; factor 1 goes through the phase vocoder too): the Spearman correlation of the
   ``tempo`` concept with the factor per excerpt, averaged; and the share of excerpts whose tempo is higher
   at 1.25x than at 0.8x;
6. clash: the excerpt mixed at equal level with a copy shifted +1 semitone vs with a copy shifted +12 (each mix
   scaled back to the excerpt's RMS): the share of excerpts whose dissonance rises more with the clash;
7. agreement: Spearman r over the unperturbed excerpts of each concept with an independent measurement
   (``PEERS``: essentia's dissonance, key strength and scale, beat confidence, onset rate and BPM;
   pyloudnorm's integrated LUFS), beside that measurement's own Spearman r with the true rating on the
   controlled corpus's held-out clips (``--controlled``); peer measurements are cached in
   ``OUT/cache/real_recordings_peers.json``;
8. timing: wall time of the run and of each model (one torch thread by default); and the run's environment.

Every model gets a row: black boxes (no concepts) get the emotion-level invariances only (the emotions
moved by gain, codec and reverb, in sd units of each emotion, which every model also reports). Models:
every installed zoo entry by default, or ``--models``; ``--model LABEL=DIR`` adds a model folder (a
candidate) to the same run. ``--merge`` measures only the models it is given and keeps the other rows of
``OUT/real_recordings.json`` (same excerpts and settings, checked). Writes ``real_recordings.json`` and
``.md``; ``card_table(summary, name)`` renders one model's numbers for its card.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NamedTuple

import numpy as np
import torch
from scipy.stats import rankdata
from tqdm.auto import tqdm

from midlevel import load
from midlevel.audio import AUDIO_SUFFIXES, is_silent, load_audio
from midlevel.concepts import MIDLEVEL_FEATURES, OUTSIDE_CONCEPTS
from midlevel.datasets.controlled.conditions import codec_round_trip
from midlevel.ioutil import atomic_write_text
from midlevel.model import AudioModel, BlackBoxModel, TwoStageModel
from midlevel.zoo import REGISTRY, list_models, weights_sha256

NAME = "real_recordings"
SAMPLE_RATE = 22050
#: Debian packages of recorded music (game soundtracks). fb-music-high ships its music as an XM module,
#: which libsndfile cannot decode; the Ogg renders of the Frozen-Bubble music are in frozen-bubble-data
#: (which apt installs with it as a recommendation). ufoai-music packs its Ogg files in a zip (.pk3).
DEFAULT_PACKAGES = ("ufoai-music", "fb-music-high", "frozen-bubble-data", "asc-music", "planetblupi-music-ogg")
# the suffixes load_audio reads (midlevel.audio.AUDIO_SUFFIXES): the Ogg Opus of warzone2100-music among them
ARCHIVE_SUFFIXES = (".pk3", ".zip")
INSTALL_HINT = "apt-get install -y ufoai-music fb-music-high asc-music planetblupi-music-ogg"

SECONDS = 10.0  # excerpt length
SKIP_S = 5.0  # never start an excerpt in a track's first seconds
SILENCE_DB = -45.0  # an excerpt whose RMS is below this (dBFS) is near-silent and drawn again
SILENCE_TRIES = 20
GAIN_DB = -12.0
MP3_KBPS = 32
MP3_LEVEL = 0.85  # libsndfile/LAME compression level giving 32 kb/s at 22050 Hz mono (measured: ``mp3_kbps``)
#: pedalboard (JUCE) scales the dry signal by 2 and the wet by 3: dry_level 0.5 passes the dry signal at unity gain, so
#: the reverb adds a room without also turning the level down (its default dry_level 0.4 would: about -2 dB)
REVERB = {"room_size": 0.3, "wet_level": 0.15, "dry_level": 0.5}
SHIFT_SEMITONES = 3
MODE_CONCEPTS = ("minorness", "tonal_stability", "melodiousness", "dissonance")
STRETCH_FACTORS = (0.7, 0.85, 1.0, 1.2, 1.4)
ORDER_FACTORS = (0.8, 1.25)  # "faster_higher": tempo at 1.25x above tempo at 0.8x
CLASH_SEMITONES, OCTAVE_SEMITONES = 1, 12
CONTEXT_S = SECONDS * max(STRETCH_FACTORS + ORDER_FACTORS)  # music kept after an excerpt's start (for stretching)

PEER_RATE = 44100  # essentia's rhythm and onset extractors assume 44.1 kHz
#: concept -> (label, key of ``peer_measurements``)
PEERS = {
    "dissonance": ("essentia Dissonance (spectral peaks, frame mean)", "dissonance"),
    "tonal_stability": ("essentia KeyExtractor strength", "key_strength"),
    "minorness": ("essentia KeyExtractor scale (minor = 1)", "minor"),
    "rhythm_stability": ("essentia RhythmExtractor2013 confidence", "beat_confidence"),
    "articulation": ("essentia OnsetRate (onsets per s)", "onset_rate"),
    "tempo": ("essentia RhythmExtractor2013 BPM", "bpm"),
    "loudness": ("pyloudnorm integrated LUFS", "lufs"),
}
PEERS_VERSION = 1  # bump when peer_measurements changes: cached values are then recomputed

#: settings that change a model's numbers: runs merged into one file must share them
MERGE_SETTINGS = ("n", "seed", "packages", "sample_rate", "seconds", "skip_s", "silence_db", "gain_db", "mp3_level",
                  "reverb", "shift_semitones", "stretch_factors", "order_factors", "clash_semitones", "octave_semitones",
                  "sd_ddof", "controlled", "n_controlled")
#: the bars of issue 30's "What it must show", for the card table
BARS = {"gain": "<= 0.05", "codec": "<= 0.15", "round_trip": "<= 0.15", "shift": "<= round trip + 0.05",
        "register_up": ">= 90%", "tempo_spearman": ">= 0.9", "dissonance_up": ">= 95%"}


# -- recorded music ----------------------------------------------------------------------------------
class Recording(NamedTuple):
    """One track of an installed package: ``file`` names it (``ARCHIVE:MEMBER`` inside a zip), ``path()``
    gives a file ``load_audio`` can read (a zip member is extracted to ``extract_dir`` first)."""

    file: str
    package: str
    extract_dir: Path | None = None

    def path(self) -> Path:
        if ":" not in self.file:
            return Path(self.file)
        archive, member = self.file.split(":", 1)
        target = Path(self.extract_dir or ".") / "recordings" / self.package / member
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(archive) as z:
                atomic_write_bytes(target, z.read(member))
        return target


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def package_files(package: str) -> list[str]:
    """The files an installed Debian package owns (none when it is not installed or dpkg is absent)."""
    try:
        done = subprocess.run(["dpkg-query", "-L", package], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return []
    return [line for line in done.stdout.splitlines() if done.returncode == 0 and Path(line).is_file()]


def list_recordings(packages: tuple[str, ...] | list[str] = DEFAULT_PACKAGES, extract_dir: Path | None = None) -> list[Recording]:
    """Audio files (``AUDIO_SUFFIXES``) of the installed ``packages``, also inside their zip archives, sorted by name."""
    found = []
    for package in packages:
        for name in package_files(package):
            suffix = Path(name).suffix.lower()
            if suffix in AUDIO_SUFFIXES:
                found.append(Recording(name, package, extract_dir))
            elif suffix in ARCHIVE_SUFFIXES and zipfile.is_zipfile(name):
                with zipfile.ZipFile(name) as z:
                    found += [Recording(f"{name}:{m}", package, extract_dir) for m in z.namelist()
                              if Path(m).suffix.lower() in AUDIO_SUFFIXES]
    return sorted(found, key=lambda r: r.file)


class Excerpt(NamedTuple):
    file: str
    package: str
    start_sample: int
    samples: np.ndarray  # CONTEXT_S seconds from the start (the excerpt is the first SECONDS of it)
    sample_rate: int = SAMPLE_RATE

    @property
    def start_s(self) -> float:
        return self.start_sample / self.sample_rate

    @property
    def audio(self) -> np.ndarray:
        return self.samples[: int(round(SECONDS * self.sample_rate))]

    def record(self) -> dict[str, Any]:
        return {"file": self.file, "package": self.package, "start_s": round(self.start_s, 6),
                "start_sample": self.start_sample}


def track_key(rec: Recording, sample_rate: int) -> str:
    """Names a track's decoded length: its file (the archive's, for a zip member) by size and time, and the rate."""
    stat = Path(rec.file.split(":", 1)[0]).stat()
    return f"{rec.file}|{stat.st_size}|{stat.st_mtime_ns}|{sample_rate}"


def pick_excerpts(recordings: list[Recording], n: int, *, seed: int = 0, sample_rate: int = SAMPLE_RATE,
                  seconds: float = SECONDS, skip_s: float = SKIP_S, context_s: float = CONTEXT_S,
                  silence_db: float = SILENCE_DB, lengths: dict[str, int] | None = None) -> list[Excerpt]:
    """A deterministic set of ``n`` excerpts (tracks sorted by name, a seeded draw), sorted by file and start.

    Each excerpt starts at least ``skip_s`` into its track, has ``context_s`` seconds of music after its start
    (for time stretching) and is not near-silent (RMS of its ``seconds`` below ``silence_db`` dBFS: drawn
    again, up to ``SILENCE_TRIES`` times). With more usable tracks than ``n``, one excerpt from each of
    ``n`` tracks taken in a seeded order; otherwise every usable track gives ``n // tracks`` excerpts, one
    more for the first ``n % tracks`` in that order, drawn from equal parts of the track. Tracks are
    decoded with ``load_audio`` (the only reader of sound files); ``lengths`` (``track_key`` -> samples) is
    read and filled, so that a later call need not decode every track once more only to learn its length.
    """
    rng = np.random.default_rng(seed)
    recs = sorted(recordings, key=lambda r: r.file)
    order = [int(i) for i in rng.permutation(len(recs))]
    length, context, skip = (int(round(v * sample_rate)) for v in (seconds, context_s, skip_s))

    lengths = {} if lengths is None else lengths

    def decode(rec: Recording) -> np.ndarray | None:
        x = load_audio(rec.path(), sample_rate).samples
        lengths[track_key(rec, sample_rate)] = len(x)
        return x if len(x) >= skip + context else None

    def long_enough(rec: Recording) -> bool:
        known = lengths.get(track_key(rec, sample_rate))
        return decode(rec) is not None if known is None else known >= skip + context

    def draw(x: np.ndarray, lo: int, hi: int) -> int | None:
        for _ in range(SILENCE_TRIES):
            start = int(rng.integers(lo, max(lo, hi) + 1))
            if not is_silent(x[start:start + length], silence_db):
                return start
        return None

    def excerpt(rec: Recording, x: np.ndarray, start: int) -> Excerpt:
        return Excerpt(rec.file, rec.package, start, x[start:start + context].copy(), sample_rate)

    chosen: list[Excerpt] = []
    if n < len(recs):
        for i in order:
            if len(chosen) == n:
                break
            x = decode(recs[i])
            start = None if x is None else draw(x, skip, len(x) - context)
            if start is not None:
                chosen.append(excerpt(recs[i], x, start))
    if len(chosen) < n:  # fewer usable tracks than excerpts: several per track
        chosen = []
        usable = [i for i in order if long_enough(recs[i])]
        if not usable:
            return []
        base, extra = divmod(n, len(usable))
        counts = {i: base + (k < extra) for k, i in enumerate(usable)}
        for i in sorted(usable):
            if not counts[i]:
                continue
            x = decode(recs[i])
            lo, hi = skip, len(x) - context
            edges = np.linspace(lo, hi, counts[i] + 1)
            for j in range(counts[i]):
                start = draw(x, int(edges[j]), int(edges[j + 1]))
                if start is not None:
                    chosen.append(excerpt(recs[i], x, start))
    return sorted(chosen, key=lambda e: (e.file, e.start_sample))


# -- perturbations ------------------------------------------------------------------------------------
def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2)))


def gain(x: np.ndarray, db: float = GAIN_DB) -> np.ndarray:
    return (x * np.float32(10 ** (db / 20))).astype(np.float32)


def mp3(x: np.ndarray, sr: int, level: float = MP3_LEVEL) -> np.ndarray:
    return codec_round_trip(x.astype(np.float32), sr, "mp3", level)


def mp3_kbps(x: np.ndarray, sr: int, level: float = MP3_LEVEL) -> float:
    """The bit rate libsndfile writes at ``level`` (constant bit rate, mono), in kb/s."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), sr, format="MP3", subtype="MPEG_LAYER_III", compression_level=level,
             bitrate_mode="CONSTANT")
    return len(buf.getvalue()) * 8 / (len(x) / sr) / 1000


def reverb(x: np.ndarray, sr: int) -> np.ndarray:
    import pedalboard as pb

    return pb.Reverb(**REVERB)(x.astype(np.float32)[None], sr)[0].astype(np.float32)


def pitch_shift(x: np.ndarray, sr: int, semitones: float) -> np.ndarray:
    import librosa

    return librosa.effects.pitch_shift(x.astype(np.float32), sr=sr, n_steps=semitones).astype(np.float32)


def fit(x: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=np.float32)
    out[: min(n, len(x))] = x[:n]
    return out


def stretch(context: np.ndarray, n: int, factor: float) -> np.ndarray:
    """``n`` samples of the music that follows the start played ``factor`` times as fast (the first
    ``n * factor`` samples of ``context`` stretched by ``librosa.effects.time_stretch(rate=factor)``)."""
    import librosa

    source = context[: int(round(n * factor))].astype(np.float32)
    return fit(librosa.effects.time_stretch(source, rate=factor), n)


def overlay(x: np.ndarray, sr: int, semitones: float, shift=None) -> np.ndarray:
    """``x`` mixed with a copy shifted by ``semitones`` at the same RMS, the mix scaled back to the RMS of ``x``
    (so that neither overlay changes the level, which the models follow). ``shift(x, sr, semitones)`` makes the
    copy: ``pitch_shift`` (librosa's) unless given."""
    y = (shift or pitch_shift)(x, sr, semitones)
    mix = x + y * np.float32(rms(x) / max(rms(y), 1e-12))
    return (mix * np.float32(rms(x) / max(rms(mix), 1e-12))).astype(np.float32)


def variant_keys(explainable: bool) -> list[str]:
    keys = ["original", "gain", "codec", "reverb"]
    if explainable:
        keys += ["shift", "round_trip", "clash", "octave"]
        keys += [f"stretch_{f:g}" for f in sorted(set(STRETCH_FACTORS + ORDER_FACTORS))]
    return keys


def make_variants(ex: Excerpt, explainable: bool) -> dict[str, np.ndarray]:
    """Every version of one excerpt the models hear (all ``SECONDS`` long)."""
    x, sr = ex.audio.astype(np.float32), ex.sample_rate
    v = {"original": x, "gain": gain(x), "codec": mp3(x, sr), "reverb": reverb(x, sr)}
    if explainable:
        shifted = pitch_shift(x, sr, SHIFT_SEMITONES)
        v |= {"shift": shifted, "round_trip": fit(pitch_shift(shifted, sr, -SHIFT_SEMITONES), len(x)),
              "clash": overlay(x, sr, CLASH_SEMITONES), "octave": overlay(x, sr, OCTAVE_SEMITONES)}
        v |= {f"stretch_{f:g}": stretch(ex.samples, len(x), f) for f in sorted(set(STRETCH_FACTORS + ORDER_FACTORS))}
    return v


# -- peer measurements ---------------------------------------------------------------------------------
def peer_measurements(samples: np.ndarray, sample_rate: int) -> dict[str, float | None]:
    """Independent measurements of one clip (``PEERS``), on the clip resampled to 44.1 kHz by ``load_audio``."""
    import essentia
    import essentia.standard as es
    import pyloudnorm

    essentia.log.infoActive = essentia.log.warningActive = False
    x = samples if sample_rate == PEER_RATE else load_audio(samples, PEER_RATE, source_sample_rate=sample_rate).samples
    x = np.ascontiguousarray(x, dtype=np.float32)
    out: dict[str, float | None] = {}

    def attempt(fn):
        try:
            return fn()
        except (RuntimeError, ValueError, IndexError):  # too short or silent for the extractor
            return None

    rhythm = attempt(lambda: es.RhythmExtractor2013(method="multifeature")(x))
    out["bpm"], out["beat_confidence"] = (float(rhythm[0]), float(rhythm[2])) if rhythm else (None, None)
    key = attempt(lambda: es.KeyExtractor(sampleRate=PEER_RATE)(x))
    out["key_strength"], out["minor"] = (float(key[2]), float(key[1] == "minor")) if key else (None, None)
    onsets = attempt(lambda: es.OnsetRate()(x))
    out["onset_rate"] = float(onsets[1]) if onsets else None

    def dissonance() -> float | None:
        window, spectrum = es.Windowing(type="blackmanharris62"), es.Spectrum()
        peaks = es.SpectralPeaks(orderBy="frequency", minFrequency=20, maxFrequency=5000, maxPeaks=100,
                                 sampleRate=PEER_RATE)
        measure, values = es.Dissonance(), []
        for frame in es.FrameGenerator(x, frameSize=2048, hopSize=1024, startFromZero=True):
            freqs, mags = peaks(spectrum(window(frame)))
            if len(freqs) > 1:
                values.append(float(measure(freqs, mags)))
        return float(np.mean(values)) if values else None

    out["dissonance"] = attempt(dissonance)
    lufs = attempt(lambda: pyloudnorm.Meter(PEER_RATE).integrated_loudness(x.astype(np.float64)))
    out["lufs"] = float(lufs) if lufs is not None and np.isfinite(lufs) else None
    return out


class PeerCache:
    """Peer measurements by clip key, in a JSON file; values measured by another version are dropped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.version = f"{PEERS_VERSION}|essentia {version('essentia')}|pyloudnorm {version('pyloudnorm')}"
        stored = json.loads(path.read_text()) if path.is_file() else {}
        self.values: dict[str, dict] = stored.get("values", {}) if stored.get("version") == self.version else {}
        self.dirty = 0

    def get(self, key: str, compute) -> dict[str, float | None]:
        if key not in self.values:
            self.values[key] = compute()
            self.dirty += 1
            if self.dirty % 25 == 0:
                self.save()
        return self.values[key]

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps({"version": self.version, "values": self.values}) + "\n")


def excerpt_key(ex: Excerpt) -> str:
    return f"{ex.file}@{ex.start_sample}/{ex.sample_rate}+{SECONDS:g}s"


def spearman(a, b) -> float | None:
    """Spearman r over the pairs where both are finite; None with fewer than 3 or a constant side."""
    a = np.array([np.nan if v is None else v for v in a], dtype=np.float64)
    b = np.array([np.nan if v is None else v for v in b], dtype=np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3:
        return None
    ra, rb = rankdata(a[keep]), rankdata(b[keep])
    if np.ptp(ra) == 0 or np.ptp(rb) == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def peers_on_controlled(corpus: Path | None, n: int | None, cache: PeerCache, seed: int) -> dict[str, Any] | None:
    """Each peer measurement's Spearman r with the true rating of its concept on the corpus's test clips."""
    if corpus is None:
        return None
    from midlevel.training.data import load_splits

    factors = (corpus / "factors.csv").is_file()
    concepts = [c for c in PEERS if c in MIDLEVEL_FEATURES or (factors and c in OUTSIDE_CONCEPTS)]
    test = load_splits(corpus, concepts=concepts)["test"]
    index = np.arange(len(test))
    if n is not None and n < len(test):
        index = np.sort(np.random.default_rng(seed).permutation(len(test))[:n])
    values = []
    for i in tqdm(index, desc="peers on the controlled corpus", unit="clip"):
        path = Path(test.paths[i])
        stat = path.stat()
        key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        values.append(cache.get(key, lambda: peer_measurements(load_audio(path, SAMPLE_RATE).samples, SAMPLE_RATE)))
    rows = {}
    for k, concept in enumerate(test.concept_names):
        label, field = PEERS[concept]
        rows[concept] = {"peer": label, "r": spearman([v[field] for v in values], test.concepts[index, k])}
    return {"corpus": str(corpus), "split": "test", "n": int(len(index)), "per_concept": rows,
            "not_rated": [c for c in PEERS if c not in concepts]}


# -- measures ---------------------------------------------------------------------------------------
def sd_of(values: np.ndarray) -> np.ndarray:
    """Standard deviation over excerpts (population, ddof 0); NaN where a column is constant."""
    sd = np.std(values, axis=0)
    return np.where(sd > 0, sd, np.nan)


def nanmean_or_none(values) -> float | None:
    values = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else None


def moved(before: np.ndarray, after: np.ndarray, sd: np.ndarray, names: list[str], only: tuple[str, ...] | None = None
          ) -> dict[str, Any] | None:
    """Mean over excerpts of |after - before| / sd, per column and the mean over the columns."""
    cols = [k for k, n in enumerate(names) if only is None or n in only]
    if not cols:
        return None
    per = np.mean(np.abs(after[:, cols] - before[:, cols]), axis=0) / sd[cols]
    return {"per_concept": {names[k]: none_if_nan(v) for k, v in zip(cols, per)}, "mean": nanmean_or_none(per)}


def clash_row(original: np.ndarray, clash: np.ndarray, octave: np.ndarray, sd: float) -> dict:
    """The clash row from dissonance per excerpt (as is, with the semitone clash, with the octave): the share whose
    dissonance rises more with the clash, and the mean rises in ``sd`` (dissonance's spread over the excerpts)."""
    rise_clash, rise_octave = clash - original, octave - original
    return {"dissonance_up": float(np.mean(rise_clash > rise_octave)),
            "rise_clash_sd": none_if_nan(np.mean(rise_clash) / sd),
            "rise_octave_sd": none_if_nan(np.mean(rise_octave) / sd)}


def none_if_nan(v) -> float | None:
    return float(v) if v is not None and np.isfinite(v) else None


def summarise_model(outputs: dict[str, dict[str, np.ndarray]], names: list[str], target_names: list[str],
                    peers: list[dict], controlled: dict[str, Any] | None) -> dict[str, Any]:
    """Every measure of one model from its outputs per variant: ``outputs['concepts'|'targets'][variant]`` (N, K)."""
    targets = outputs["targets"]
    tsd = sd_of(targets["original"])
    result: dict[str, Any] = {
        "targets": {k: moved(targets["original"], targets[k], tsd, target_names) for k in ("gain", "codec", "reverb")},
    }
    if not names:
        return {"black_box": True, "note": "black box: no concepts, so no concept measure applies",
                **{k: None for k in ("gain", "codec", "reverb", "transpose", "stretch", "clash", "agreement")}, **result}
    c = outputs["concepts"]
    orig = c["original"]
    sd = sd_of(orig)
    col = {n: k for k, n in enumerate(names)}
    result = {"black_box": False, "concepts": names, "sd": {n: none_if_nan(v) for n, v in zip(names, sd)},
              "gain": moved(orig, c["gain"], sd, names), "codec": moved(orig, c["codec"], sd, names),
              "reverb": moved(orig, c["reverb"], sd, names), **result}
    shift, trip = moved(orig, c["shift"], sd, names, MODE_CONCEPTS), moved(orig, c["round_trip"], sd, names, MODE_CONCEPTS)
    result["transpose"] = {
        "register_up": float(np.mean(c["shift"][:, col["register"]] > orig[:, col["register"]])) if "register" in col else None,
        # beside the definition: the shift against the round trip, both through the pitch shifter (same artefacts)
        "register_up_vs_round_trip": (float(np.mean(c["shift"][:, col["register"]] > c["round_trip"][:, col["register"]]))
                                      if "register" in col else None),
        "shift": shift, "round_trip": trip,
        "shift_minus_round_trip": (shift["mean"] - trip["mean"]) if shift and trip and None not in (shift["mean"], trip["mean"]) else None,
    }
    if "tempo" in col:
        t = col["tempo"]
        tempo = np.column_stack([c[f"stretch_{f:g}"][:, t] for f in STRETCH_FACTORS])
        rho = [spearman(STRETCH_FACTORS, row) for row in tempo]
        slow, fast = (c[f"stretch_{f:g}"][:, t] for f in ORDER_FACTORS)
        result["stretch"] = {"tempo_spearman": nanmean_or_none([np.nan if r is None else r for r in rho]),
                             "faster_higher": float(np.mean(fast > slow)),
                             "excerpts_with_rank_correlation": int(sum(r is not None for r in rho))}
    else:
        result["stretch"] = None
    if "dissonance" in col:
        d = col["dissonance"]
        result["clash"] = clash_row(orig[:, d], c["clash"][:, d], c["octave"][:, d], sd[d])
    else:
        result["clash"] = None
    truth = (controlled or {}).get("per_concept", {})
    result["agreement"] = {
        concept: {"peer": label, "r_real": spearman(orig[:, col[concept]], [p[field] for p in peers]),
                  "r_peer_vs_truth_controlled": truth.get(concept, {}).get("r")}
        for concept, (label, field) in PEERS.items() if concept in col}
    result["original_concepts"] = np.round(orig, 6).tolist()
    return result


# -- models ---------------------------------------------------------------------------------------------
def find_models(args: argparse.Namespace) -> dict[str, tuple[str | Path, str]]:
    """Label -> (what ``load`` takes, weights sha256): zoo entries (``--models``, default every installed music
    entry: the benchmark is of recorded music) and model folders (``--model LABEL=DIR``)."""
    names = ([n for n in list_models() if REGISTRY[n].task == "music-emotion"] if args.models is None
             else [m for m in args.models.split(",") if m.strip()])
    found: dict[str, tuple[str | Path, str]] = {}
    for spec in names:
        spec = spec.strip()
        found[spec] = (spec, weights_sha256(spec))
    for item in args.model or []:
        label, sep, folder = item.partition("=")
        if not sep or not label or not folder:
            raise SystemExit(f"--model must look like LABEL=MODEL_DIR; got {item!r}")
        found[label] = (Path(folder), weights_sha256(Path(folder)))
    if not found:
        raise SystemExit("no model to measure (--models and --model are both empty)")
    return found


def outputs_of(model: AudioModel, audio: np.ndarray, sr: int) -> tuple[np.ndarray | None, np.ndarray]:
    if isinstance(model, TwoStageModel):
        e = model.explain(audio, sample_rate=sr)
        # the network's concepts before clipping to the scale: clipping would hide how far a perturbation moves them
        concepts = e.concepts if e.raw_concepts is None else e.raw_concepts
        return np.asarray(concepts, dtype=np.float64), np.asarray(e.targets, dtype=np.float64)
    if isinstance(model, BlackBoxModel):
        return None, np.asarray(model.predict_targets(audio, sample_rate=sr), dtype=np.float64)
    raise TypeError(f"{type(model).__name__}: neither a two-stage model nor a black box")


# -- merging an earlier run ---------------------------------------------------------------------------
def check_mergeable(results: dict[str, Any], earlier: dict[str, Any], measured: set[str], source: Path) -> None:
    """Refuse to merge an earlier run on other excerpts or settings, or whose kept zoo entries changed weights."""
    def refuse(why: str) -> SystemExit:
        return SystemExit(f"{source}: cannot merge: {why}")

    differ = [k for k in MERGE_SETTINGS if earlier["settings"].get(k) != results["settings"][k]]
    if differ:
        raise refuse("the earlier run used other settings: " + ", ".join(
            f"{k} {earlier['settings'].get(k)!r} (now {results['settings'][k]!r})" for k in differ))
    strip = lambda rows: [(r["file"], r["start_sample"]) for r in rows]  # noqa: E731
    if strip(earlier["excerpts"]) != strip(results["excerpts"]):
        raise refuse("the earlier run measured other excerpts (other packages installed?)")
    for name, row in earlier["models"].items():
        if name in measured or name not in REGISTRY:
            continue
        if weights_sha256(name) != row["weights_sha256"]:
            raise refuse(f"{name!r} has other weights now than the earlier run measured; measure it in this run")


def merge_earlier(results: dict[str, Any], earlier: dict[str, Any]) -> dict[str, Any]:
    """This run's rows plus the earlier run's rows of models this one did not measure (first, in their order)."""
    kept = {n: r for n, r in earlier["models"].items() if n not in results["models"]}
    results["models"] = kept | results["models"]
    runs = [{**run, "models": [m for m in run["models"] if m in kept]} for run in earlier.get("runs", [])]
    results["runs"] = [r for r in runs if r["models"]] + results["runs"]
    results["settings"]["models"] = ",".join(results["models"])
    return results


# -- report -------------------------------------------------------------------------------------------
def strict_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strict_json(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def num(v: float | None, fmt: str = ".2f") -> str:
    return "-" if v is None else format(v, fmt)


def pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def dig(row: dict | None, *keys: str) -> Any:
    for k in keys:
        if row is None:
            return None
        row = row.get(k)
    return row


def card_table(summary: dict[str, Any], name: str) -> str:
    """One model's real-recordings numbers as a Markdown table (measure, value, issue 30's bar), for its card."""
    row = summary["models"][name]
    s = summary["settings"]
    head = [f"| on real recordings ({len(summary['excerpts'])} excerpts of {s['seconds']:g} s from "
            f"{summary['n_tracks']} recorded tracks) | `{name}` | bar (issue 30) |", "|---|---|---|"]
    lines = []
    if row["black_box"]:
        lines.append("| concept measures | none: a black box has no concepts | |")
    else:
        t = row["transpose"]
        lines += [
            f"| concepts moved by a {s['gain_db']:g} dB gain change (mean abs change, in sd of the concept over the excerpts) "
            f"| {num(dig(row, 'gain', 'mean'))} | {BARS['gain']} |",
            f"| concepts moved by a {s['mp3_kbps_target']} kb/s mono MP3 round trip (same unit) | {num(dig(row, 'codec', 'mean'))} "
            f"| {BARS['codec']} |",
            f"| concepts moved by a mild reverb (same unit) | {num(dig(row, 'reverb', 'mean'))} | |",
            f"| mode-related concepts moved by a +{s['shift_semitones']} semitone pitch shift (same unit) "
            f"| {num(dig(t, 'shift', 'mean'))} | {BARS['shift']} |",
            f"| mode-related concepts moved by a +{s['shift_semitones']} then -{s['shift_semitones']} round trip "
            f"(the shift's own artefacts) | {num(dig(t, 'round_trip', 'mean'))} | {BARS['round_trip']} |",
            f"| predicted register rises after a +{s['shift_semitones']} semitone pitch shift | {pct(t['register_up'])} "
            f"| {BARS['register_up']} |",
            f"| predicted register higher after the +{s['shift_semitones']} shift than after the +{s['shift_semitones']}/"
            f"-{s['shift_semitones']} round trip (both through the pitch shifter) | {pct(t.get('register_up_vs_round_trip'))} | |",
            f"| tempo concept vs time-stretch factor {min(s['stretch_factors']):g}-{max(s['stretch_factors']):g} "
            f"(mean rank correlation per excerpt) | {num(dig(row, 'stretch', 'tempo_spearman'))} | {BARS['tempo_spearman']} |",
            f"| {s['order_factors'][1]:g}x vs {s['order_factors'][0]:g}x time stretch orders the tempo concept "
            f"| {pct(dig(row, 'stretch', 'faster_higher'))} | |",
            f"| semitone-clash overlay raises dissonance more than an octave overlay | {pct(dig(row, 'clash', 'dissonance_up'))} "
            f"| {BARS['dissonance_up']} |"]
        for concept, a in row["agreement"].items():
            lines.append(f"| {concept.replace('_', ' ')} vs {a['peer']} (Spearman r; the peer's own r with the true "
                         f"rating on the controlled corpus) | {num(a['r_real'])} ({num(a['r_peer_vs_truth_controlled'])}) | |")
    lines.append(f"| emotions moved by the {s['gain_db']:g} dB gain / MP3 / reverb (mean over emotions, in sd) | "
                 + " / ".join(num(dig(row, 'targets', k, 'mean')) for k in ("gain", "codec", "reverb")) + " | |")
    return "\n".join(head + lines) + "\n"


def concept_columns(results: dict[str, Any]) -> list[str]:
    seen = []
    for row in results["models"].values():
        seen += [c for c in row.get("concepts") or [] if c not in seen]
    return seen


def markdown(results: dict[str, Any]) -> str:
    s, models = results["settings"], results["models"]
    concepts = concept_columns(results)
    env = results["environment"]
    lines = ["# Real recordings: invariance, equivariance and agreement of the concepts", "",
             f"{len(results['excerpts'])} excerpts of {s['seconds']:g} s from {results['n_tracks']} recorded tracks of the "
             f"Debian packages {', '.join(f'`{p}`' for p in results['packages_found'])} (seed {s['seed']}; at least "
             f"{s['skip_s']:g} s into a track, not near-silent); {env['cpu']}, torch {env['torch']}, {env['torch_threads']} "
             f"thread{'s' if env['torch_threads'] != 1 else ''}; {env['date']}; whole run {results['seconds']['total']:.0f} s.", "",
             "## How to read it", "",
             "\"sd\" is the standard deviation of a concept's prediction over the unperturbed excerpts, i.e. how much "
             "the concept differs between recordings: 0.10 means a perturbation moves the concept by a tenth of that "
             "spread on average. Gain, codec and reverb change the recording, not the music: a concept should not move "
             f"(issue 30's bars: gain <= 0.05, MP3 <= 0.15). A +{s['shift_semitones']} semitone shift should raise "
             "`register` and leave the mode-related concepts where the shift's own processing artefacts leave them (the "
             "+3/-3 round trip is that control). Time-stretching should order `tempo` (rank correlation 1 = perfectly "
             "ordered), and a semitone clash should raise `dissonance` more than an octave (50% is chance). Agreement is "
             "a Spearman r with an independent measurement from a peer library on the same excerpts; read it beside the "
             "peer's own r with the true rating on the controlled corpus: a peer that cannot follow the corpus's "
             "definition (low r there) can neither confirm nor refute the model. Black boxes have no concepts: their "
             "rows report only the emotions moved by gain, codec and reverb.", ""]

    def invariance(key: str, title: str) -> None:
        nonlocal lines
        lines += [f"## {title}", "", "| model | mean | " + " | ".join(concepts) + " |", "|---|---|" + "---|" * len(concepts)]
        for name, row in models.items():
            if row["black_box"]:
                lines.append(f"| `{name}` | black box: no concepts |" + " |" * len(concepts))
                continue
            m = row[key]
            lines.append(f"| `{name}` | **{num(m['mean'])}** | " + " | ".join(num(m["per_concept"].get(c)) for c in concepts) + " |")
        lines.append("")

    invariance("gain", f"1. Gain {s['gain_db']:g} dB (concepts moved, in sd)")
    invariance("codec", f"2. MP3 round trip, {s['mp3_kbps_target']} kb/s mono (measured {s['mp3_kbps']:.1f} kb/s; concepts moved, in sd)")
    invariance("reverb", "3. Mild reverb (pedalboard Reverb " + ", ".join(f"{k}={v:g}" for k, v in s["reverb"].items())
               + f"; mean level change {s['reverb_level_change_db']:+.1f} dB; concepts moved, in sd)")
    mode = [c for c in MODE_CONCEPTS if c in concepts]
    lines += [f"## 4. Transposition +{s['shift_semitones']} semitones", "",
              "Register up: share of excerpts whose `register` rises (shifted vs original); \"vs round trip\": shifted "
              f"vs shifted +{s['shift_semitones']} and back, both through the pitch shifter, so its artefacts cancel. "
              "Then the mode-related concepts moved (in sd) by the "
              f"shift and by the +{s['shift_semitones']}/-{s['shift_semitones']} round trip.", "",
              "| model | register up | register up vs round trip | " + " | ".join(f"shift: {c}" for c in mode)
              + " | shift: mean | " + " | ".join(f"round trip: {c}" for c in mode) + " | round trip: mean | shift - round trip |",
              "|---|---|---|" + "---|" * (2 * len(mode) + 3)]
    for name, row in models.items():
        if row["black_box"]:
            lines.append(f"| `{name}` | black box: no concepts |" + " |" * (2 * len(mode) + 4))
            continue
        t = row["transpose"]
        cells = [pct(t["register_up"]), pct(t.get("register_up_vs_round_trip"))]
        for part in ("shift", "round_trip"):
            cells += [num(dig(t, part, "per_concept", c)) for c in mode] + [f"**{num(dig(t, part, 'mean'))}**"]
        lines.append(f"| `{name}` | " + " | ".join(cells) + f" | {num(t['shift_minus_round_trip'], '+.2f')} |")
    lines += ["", f"## 5. Time stretch (factors {', '.join(f'{f:g}' for f in s['stretch_factors'])})", "",
              f"| model | tempo vs factor (mean Spearman per excerpt) | tempo higher at {s['order_factors'][1]:g}x than at "
              f"{s['order_factors'][0]:g}x |", "|---|---|---|"]
    for name, row in models.items():
        st = row["stretch"]
        why = "black box: no concepts" if row["black_box"] else "no tempo concept"
        lines.append(f"| `{name}` | {num(st['tempo_spearman'])} | {pct(st['faster_higher'])} |" if st else f"| `{name}` | {why} | |")
    lines += ["", "## 6. Clash overlay (excerpt + a copy +1 semitone vs + a copy +12 semitones, equal level)", "",
              "| model | dissonance rises more with the clash | mean rise, clash (sd) | mean rise, octave (sd) |",
              "|---|---|---|---|"]
    for name, row in models.items():
        cl = row["clash"]
        why = "black box: no concepts" if row["black_box"] else "no dissonance concept"
        lines.append(f"| `{name}` | {pct(cl['dissonance_up'])} | {num(cl['rise_clash_sd'], '+.2f')} | "
                     f"{num(cl['rise_octave_sd'], '+.2f')} |" if cl else f"| `{name}` | {why} | | |")
    controlled = results["peers_on_controlled"]
    peer_concepts = [c for c in PEERS if any(c in (r.get("agreement") or {}) for r in models.values())]
    lines += ["", "## 7. Agreement with peer measurements (Spearman r over the unperturbed excerpts)", "",
              "| model | " + " | ".join(peer_concepts) + " |", "|---|" + "---|" * len(peer_concepts)]
    for name, row in models.items():
        if row["black_box"]:
            lines.append(f"| `{name}` | black box: no concepts |" + " |" * (len(peer_concepts) - 1))
            continue
        lines.append(f"| `{name}` | " + " | ".join(num(dig(row, "agreement", c, "r_real")) for c in peer_concepts) + " |")
    if controlled:
        lines.append(f"| *peer vs true rating, controlled corpus ({controlled['n']} held-out clips)* | "
                     + " | ".join(f"*{num(dig(controlled, 'per_concept', c, 'r'))}*" for c in peer_concepts) + " |")
    else:
        lines.append("| *peer vs true rating, controlled corpus* | " + " | ".join("*not measured*" for _ in peer_concepts) + " |")
    lines += ["", "Peers: " + "; ".join(f"{c}: {PEERS[c][0]}" for c in peer_concepts) + f" (all on the excerpt resampled to "
              f"{PEER_RATE} Hz).", ""]
    targets = next(iter(r["targets"]["gain"]["per_concept"] for r in models.values()))
    lines += ["## 8. Emotions moved by gain, codec and reverb (mean over emotions, in sd of each emotion)", "",
              "| model | gain | MP3 | reverb |", "|---|---|---|---|"]
    lines += [f"| `{name}` | " + " | ".join(num(dig(row, "targets", k, "mean")) for k in ("gain", "codec", "reverb")) + " |"
              for name, row in models.items()]
    lines += ["", f"({len(targets)} emotions: {', '.join(targets)}.)", "",
              "## 9. Time", "", "| model | seconds (all its evaluations) | evaluations | s per 10 s evaluation |",
              "|---|---|---|---|"]
    for name, row in models.items():
        t = row["seconds"]
        lines.append(f"| `{name}` | {t['inference']:.0f} | {t['evaluations']} | {t['inference'] / max(t['evaluations'], 1):.3f} |")
    sec = results["seconds"]
    lines += ["", f"Whole run {sec['total']:.0f} s: choosing and decoding the excerpts {sec['excerpts']:.0f} s, "
              f"perturbing them {sec['variants']:.0f} s, peer measurements {sec['peers']:.0f} s (cached after the first run)."]
    runs = results.get("runs", [])
    if len(runs) > 1:
        lines += ["", "## Runs", "", "This file merges runs on the same excerpts with the same settings (`--merge`); each "
                  "model's numbers come from the run that measured it.", "", "| finished | models | environment |", "|---|---|---|"]
        lines += [f"| {r['finished']} | " + ", ".join(f"`{m}`" for m in r["models"]) + f" | {r['environment']} |" for r in runs]
    return "\n".join(lines) + "\n"


# -- main --------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100, help="excerpts (8 for a quick look)")
    p.add_argument("--models", help="zoo names or model folders, comma-separated (default: every installed music zoo entry; "
                                    "'' for none, e.g. with --model)")
    p.add_argument("--model", action="append", metavar="LABEL=MODEL_DIR",
                   help="also measure the model folder MODEL_DIR under LABEL (repeatable), e.g. a candidate")
    p.add_argument("--packages", default=",".join(DEFAULT_PACKAGES), help="Debian packages whose audio files are used")
    p.add_argument("--controlled", default="corpora/heldout",
                   help="controlled corpus whose test clips rate each peer measurement against the truth ('' to skip)")
    p.add_argument("--n-controlled", type=int, help="of its test clips, how many (default: all)")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--cache-dir", help="peer measurements and extracted archive members (default: OUT/cache)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: a 10 s clip is one window, and on a busy 2-core machine two threads spin "
                        "against each other: measured 0.05 s per evaluation with one thread, 1.7 s with two)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--merge", action="store_true",
                   help="keep the rows of OUT/real_recordings.json that this run does not measure (same excerpts and settings)")
    return p.parse_args(argv)


def environment() -> dict[str, Any]:
    import librosa
    import pedalboard
    import soundfile

    versions = {"torch": torch.__version__, "numpy": np.__version__, "librosa": librosa.__version__,
                "pedalboard": pedalboard.__version__, "libsndfile": soundfile.__libsndfile_version__}
    for package in ("essentia", "pyloudnorm"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    return {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": f"{platform.machine()} CPU ({os.cpu_count()} cores visible)", "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "platform": platform.platform(), **versions}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    out = Path(args.out)
    cache_dir = Path(args.cache_dir) if args.cache_dir else out / "cache"
    torch.manual_seed(args.seed)
    torch.set_flush_denormal(True)  # the transcribing backbones reach denormal floats (see intrinsic_vs_shap.py)
    torch.set_num_threads(args.threads)
    packages = tuple(p for p in args.packages.split(",") if p)
    specs = find_models(args)
    controlled = Path(args.controlled) if args.controlled else None
    if controlled is not None and not controlled.is_dir():
        raise SystemExit(f"{controlled}: no controlled corpus (build it, or pass --controlled '' to skip the peers' "
                         "agreement with the truth)")

    t = time.perf_counter()
    recordings = list_recordings(packages, cache_dir)
    if not recordings:
        raise SystemExit(f"no recorded music installed (packages {', '.join(packages)}); {INSTALL_HINT}")
    lengths_file = cache_dir / f"{NAME}_track_lengths.json"
    lengths = json.loads(lengths_file.read_text()) if lengths_file.is_file() else {}
    excerpts = pick_excerpts(recordings, args.n, seed=args.seed, lengths=lengths)
    lengths_file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(lengths_file, json.dumps(lengths, indent=0, sort_keys=True) + "\n")
    if not excerpts:
        raise SystemExit("no usable track (all shorter than "
                         f"{SKIP_S + CONTEXT_S:g} s or silent) among {len(recordings)} files")
    if len(excerpts) < args.n:
        print(f"warning: {len(excerpts)} excerpts, not {args.n} (near-silent draws skipped)", file=sys.stderr)
    seconds = {"excerpts": time.perf_counter() - t}
    sr = SAMPLE_RATE
    probe = excerpts[0].audio
    settings = {"n": args.n, "seed": args.seed, "packages": list(packages), "sample_rate": sr, "seconds": SECONDS,
                "skip_s": SKIP_S, "silence_db": SILENCE_DB, "gain_db": GAIN_DB, "mp3_kbps_target": MP3_KBPS,
                "mp3_level": MP3_LEVEL, "mp3_kbps": mp3_kbps(probe, sr), "reverb": REVERB,
                "shift_semitones": SHIFT_SEMITONES, "mode_concepts": list(MODE_CONCEPTS),
                "stretch_factors": list(STRETCH_FACTORS), "order_factors": list(ORDER_FACTORS),
                "clash_semitones": CLASH_SEMITONES, "octave_semitones": OCTAVE_SEMITONES, "sd_ddof": 0,
                "controlled": str(controlled) if controlled else None, "n_controlled": args.n_controlled,
                "models": ",".join(specs), "threads": args.threads}

    t = time.perf_counter()
    cache = PeerCache(cache_dir / f"{NAME}_peers.json")
    peers = [cache.get(excerpt_key(ex), lambda ex=ex: peer_measurements(ex.audio, ex.sample_rate))
             for ex in tqdm(excerpts, desc="peers on the excerpts", unit="excerpt")]
    controlled_peers = peers_on_controlled(controlled, args.n_controlled, cache, args.seed)
    cache.save()
    seconds["peers"] = time.perf_counter() - t

    env = environment()
    results: dict[str, Any] = {
        "settings": settings, "environment": env, "packages_found": sorted({r.package for r in recordings}),
        "n_tracks": len({ex.file for ex in excerpts}),
        "excerpts": [{**ex.record(), "peers": p} for ex, p in zip(excerpts, peers)],
        "peers_on_controlled": controlled_peers, "models": {},
        "runs": [{"models": list(specs), "environment": f"{env['cpu']}, torch {env['torch']}, {env['torch_threads']} threads",
                  "finished": env["date"]}],
    }
    earlier = None
    if args.merge and (out / f"{NAME}.json").is_file():  # refused here, before any model work
        earlier = json.loads((out / f"{NAME}.json").read_text())
        check_mergeable(results, earlier, set(specs), out / f"{NAME}.json")

    models, clock, loaded = {}, {}, {}
    for name, (spec, _) in specs.items():
        t = time.perf_counter()
        models[name] = load(spec)
        loaded[name] = time.perf_counter() - t
        clock[name] = {"inference": 0.0, "evaluations": 0}
    keys = {n: variant_keys(isinstance(m, TwoStageModel)) for n, m in models.items()}
    outputs = {n: {"concepts": {k: [] for k in keys[n]}, "targets": {k: [] for k in keys[n]}} for n in models}
    any_explainable = any(isinstance(m, TwoStageModel) for m in models.values())
    seconds["variants"], reverb_db = 0.0, []
    for ex in tqdm(excerpts, desc="models on the excerpts", unit="excerpt"):
        t = time.perf_counter()
        variants = make_variants(ex, any_explainable)
        seconds["variants"] += time.perf_counter() - t
        reverb_db.append(20 * np.log10(rms(variants["reverb"]) / max(rms(variants["original"]), 1e-12)))
        for name, model in models.items():
            t = time.perf_counter()
            for key in keys[name]:
                concepts, targets = outputs_of(model, variants[key], sr)
                outputs[name]["concepts"][key].append(concepts)
                outputs[name]["targets"][key].append(targets)
            clock[name]["inference"] += time.perf_counter() - t
            clock[name]["evaluations"] += len(keys[name])
    settings["reverb_level_change_db"] = float(np.mean(reverb_db))  # mean over the excerpts

    for name, model in models.items():
        explainable = isinstance(model, TwoStageModel)
        arrays = {"targets": {k: np.stack(v) for k, v in outputs[name]["targets"].items()},
                  "concepts": {k: np.stack(v) for k, v in outputs[name]["concepts"].items()} if explainable else {}}
        names = list(model.config.concept_names) if explainable else []
        row = summarise_model(arrays, names, list(model.config.target_names), peers, controlled_peers)
        results["models"][name] = {"weights_sha256": specs[name][1], "source": str(specs[name][0]), **row,
                                   "seconds": {"load": loaded[name], **clock[name]}}
    if earlier is not None:
        results = merge_earlier(results, earlier)
    seconds["total"] = time.perf_counter() - started
    results["seconds"] = seconds
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{NAME}.json", json.dumps(strict_json(results), indent=1, allow_nan=False) + "\n")
    atomic_write_text(out / f"{NAME}.md", markdown(strict_json(results)))
    print(markdown(strict_json(results)))
    print(f"written: {out / NAME}.json, .md ({seconds['total']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
