"""Can a stretch-equivariance term on recorded music teach the tempo concept to follow a time stretch? (issue 30)

The default's tempo concept follows a librosa time stretch of recorded music (factors 0.7 ... 1.4) at a mean
per-excerpt rank correlation of 0.42 (bar 0.9), while on the controlled corpus's clips the same model follows
it at 0.85-0.89. Training on vocoder variants of the corpus changed nothing on recorded music
(``docs/studies/vocoder_variants.md``): the gap is the music, not the processing. The invariance terms tried
on recorded music (transposition, codec) were satisfied by shrinking the concepts and did not carry over.

An *equivariance* term cannot be satisfied by shrinking: played ``s`` times as fast, a piece's tempo rating
moves by ``TEMPO_PER_LN x ln s`` by the corpus's own definition (tempo is linear in ln BPM over 50-170 BPM on
1-10), so the difference between two stretched versions of one recorded excerpt has a known value, and no
label is needed. This study continues the default's backbone with, per step:

- **supervised**: the default's joint loss (concepts and emotions) on clips of a randomised controlled corpus
  built from training pieces (``--corpus``), which holds the floors;
- **equivariance** (weight ``--weight``): for excerpts of Debian game soundtracks that the benchmark does not
  read (``shift_consistency.PACKAGES``), each heard as recorded and stretched by Rubber Band at
  ``--versions`` factors drawn log-uniform in 1/1.4 ... 1.4, the tempo difference of two versions against
  ``TEMPO_PER_LN x`` the difference of their ln factors, in sd of tempo over the excerpts;
- **anchor** (same weight): every concept of the excerpt as recorded stays where the frozen default puts it;
- **corpus anchor** (weight ``--corpus-anchor``, 0 by default): every concept of the corpus clips stays where the
  frozen default puts it.

Options add a plain phase vocoder beside Rubber Band (``--stretchers``), MP3 round trips (``--codec-share``),
transposed versions (``--shift-versions``), a term that holds every other concept of every version
(``--invariance``), one that keeps the excerpts mixed with a semitone clash or an octave (``--overlay-anchor``) and a
hinge that asks the clash to read more dissonant than the octave (``--clash-margin``).
The benchmark stretches and shifts with librosa, so training never sees the tool it is scored with. The
concept layer and the head stay as they are; batch norm keeps its statistics. Scored as ``shift_consistency``
scores (controlled floors, gain, MP3, shifts) plus the tempo's rank correlation with the stretch factor, with
librosa and with Rubber Band, and the benchmark's clash row, on 100 excerpts of the benchmark's packages drawn with
**seed 1**.

    python studies/stretch_equivariance.py --base runs/eq3k-struct/models/joint-linear --steps 1500 \
        --corpus-anchor 1 --save runs/stretch-eq   # ~19 min on 2 cores: emotion-structural-linear-mid10-rand1k
    python studies/stretch_equivariance.py --base runs/stretch-eq/models/joint-linear --steps 1500 --corpus-anchor 1 \
        --invariance 1 --overlay-anchor 1 --stretchers rubberband,vocoder --codec-share 0.5 \
        --save runs/untimed-overlay   # ~35 min: emotion-structural-linear-mid10-rand1k-v2
    python studies/stretch_equivariance.py --base runs/untimed-overlay/models/joint-linear --steps 1500 --corpus-anchor 1 \
        --invariance 1 --overlay-anchor 1 --clash-margin 1 --stretchers rubberband,vocoder,vocoder --codec-share 0.5 \
        --save runs/v3-clash   # ~45 min: the default, emotion-structural-linear-mid10-rand1k-v3

``--save`` writes the family layout ``scripts/build_zoo.py --add`` ships from; docs/studies/stretch_equivariance.md
has the whole recipe.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "studies"))
import real_recordings as rr  # noqa: E402
from codec_consistency import (TRAINABLE, add_continuation_options, continuation_results, loss_line,  # noqa: E402
                               start_run)
from recorded_study import recorded_excerpts  # noqa: E402
from shift_consistency import (PACKAGES, batched_concepts, behaviour_table, log_spectrogram,  # noqa: E402
                               score_and_write, training_excerpts, write_results)
from vocoder_control import concepts_of_logspec, rubberband_shift, rubberband_stretch  # noqa: E402

from midlevel import load  # noqa: E402
from midlevel.audio import load_audio  # noqa: E402
from midlevel.checkpoint import weights_sha256  # noqa: E402
from midlevel.datasets.controlled.conditions import codec_round_trip  # noqa: E402
from midlevel.datasets.controlled_labels import OUTSIDE_RANGES  # noqa: E402
from midlevel.model import AudioModel  # noqa: E402
from midlevel.training.data import load_clips  # noqa: E402
from midlevel.training.augment import transposition_matrices  # noqa: E402
from midlevel.training.loops import TrainSettings, batch_loss  # noqa: E402
from midlevel.zoo.cards import stretchers_drawn_said  # noqa: E402
from midlevel.zoo.registry import read_registry  # noqa: E402

#: the model continued (superseded by the result and out of the wheel since: pass its folder, see ``--base``)
MODEL = "emotion-structural-linear-mid10-rand3k"
#: rating points per unit of ln(tempo): the corpus maps ln BPM over OUTSIDE_RANGES["tempo"] linearly onto 1-10
TEMPO_PER_LN = 9.0 / (OUTSIDE_RANGES["tempo"][1] - OUTSIDE_RANGES["tempo"][0])
#: rating points per semitone of transposition: the corpus maps its transposition linearly onto register's 1-10
REGISTER_PER_SEMITONE = 9.0 / (OUTSIDE_RANGES["register"][1] - OUTSIDE_RANGES["register"][0])
#: the largest transposition of a shifted training version (``--shift-versions``), in semitones either way
MAX_SHIFT = 4
#: the largest stretch the excerpts' context allows (rr.CONTEXT_S = 1.4 x the excerpt)
MAX_STRETCH = max(rr.STRETCH_FACTORS)


#: Rubber Band settings drawn per training version with ``--varied``: its transient handling (``smooth`` smears
#: onsets as a plain phase vocoder does), its long analysis window (librosa's is 93 ms) and its faster engine
RUBBERBAND_VARIANTS = tuple({"transient_mode": t, "use_long_fft_window": w, "high_quality": q}
                            for t in ("crisp", "mixed", "smooth") for w in (False, True) for q in (True, False))


#: frame lengths drawn for the plain phase vocoder (``--stretchers rubberband,vocoder``), hop a quarter of each
VOCODER_FFTS = (1024, 2048, 4096)
#: how far (in sd of dissonance over the recorded excerpts) ``--clash-margin`` asks a semitone-clash overlay to raise
#: dissonance above an octave overlay of the same excerpt; about half the benchmark's mean rise, so that only the
#: excerpts where the clash barely registers are pushed
CLASH_MARGIN_SD = 1.0
#: libsndfile MP3 compression levels drawn for ``--codec-share`` (about 32 to 96 kb/s, as the codec study drew)
CODEC_LEVELS = (0.3, 0.9)


def vocoder_stretch(context: np.ndarray, n: int, factor: float, n_fft: int) -> np.ndarray:
    """As ``rr.stretch``, with a plain phase vocoder (torchaudio's ``TimeStretch`` between an STFT and its inverse,
    frames of ``n_fft``, hop ``n_fft // 4``): it smears onsets over its frame as librosa's does, which Rubber Band's
    transient handling avoids."""
    import torchaudio.transforms as T

    hop = n_fft // 4
    source = torch.as_tensor(context[: int(round(n * factor))], dtype=torch.float32)
    spec = T.Spectrogram(n_fft=n_fft, hop_length=hop, power=None)(source)
    stretched = T.TimeStretch(hop_length=hop, n_freq=n_fft // 2 + 1, fixed_rate=factor)(spec)
    return rr.fit(T.InverseSpectrogram(n_fft=n_fft, hop_length=hop)(stretched).numpy(), n)


def vocoder_shift(x: np.ndarray, sr: int, semitones: float, n_fft: int) -> np.ndarray:
    """``x`` transposed by ``semitones`` as librosa's ``pitch_shift`` does it (a phase-vocoder stretch, then a
    resampling back to the length), with ``vocoder_stretch``'s vocoder and soxr."""
    import soxr

    rate = 2.0 ** (semitones / 12.0)
    slow = vocoder_stretch(x, int(round(len(x) * rate)), 1.0 / rate, n_fft)
    return rr.fit(soxr.resample(slow, sr * rate, sr), len(x))


@torch.no_grad()
def overlay_excerpts(model, excerpts: list) -> torch.Tensor:
    """(n, 2, bands, frames) log spectrograms of the training ``excerpts`` mixed with a copy a semitone up and with
    a copy an octave up (the benchmark's ``rr.overlay`` with Rubber Band's shift, so that librosa's stays out of
    training), for ``--overlay-anchor``."""
    specs = []
    for ex in tqdm(excerpts, desc="overlaid training excerpts", unit="excerpt"):
        x = ex.audio[:int(round(rr.SECONDS * ex.sample_rate))].astype(np.float32)
        specs.append(torch.stack([log_spectrogram(model, load_audio(rr.overlay(x, ex.sample_rate, k, rubberband_shift),
                                  model.config.sample_rate, source_sample_rate=ex.sample_rate, check_level=False).samples)
                                  for k in (rr.CLASH_SEMITONES, rr.OCTAVE_SEMITONES)]))
    return torch.stack(specs)


def stretch_version(ex, n_out: int, ln: float, stretcher: str, rng: np.random.Generator, varied: bool,
                    codec_share: float, semitones: float = 0.0, round_trip: bool = False) -> np.ndarray:
    """One training version of excerpt ``ex``: its music played ``exp(ln)`` times as fast by ``stretcher`` (or,
    with ``semitones``, transposed by it at the same speed, and with ``round_trip`` transposed back by the same tool
    and settings: the benchmark's round-trip control, the tool's artefacts without the transposition), then through an
    MP3 round trip with probability ``codec_share``."""
    if stretcher == "vocoder":
        n_fft = int(rng.choice(VOCODER_FFTS))
        if semitones:
            wave = vocoder_shift(ex.audio[:n_out], ex.sample_rate, semitones, n_fft)
            wave = vocoder_shift(wave, ex.sample_rate, -semitones, n_fft) if round_trip else wave
        else:
            wave = vocoder_stretch(ex.samples, n_out, math.exp(ln), n_fft)
    elif semitones:
        wave = rubberband_shift(ex.audio[:n_out], ex.sample_rate, semitones)
        wave = rubberband_shift(wave, ex.sample_rate, -semitones) if round_trip else wave
    else:
        options = RUBBERBAND_VARIANTS[int(rng.integers(len(RUBBERBAND_VARIANTS)))] if varied else {}
        wave = rubberband_stretch(ex.samples, n_out, math.exp(ln), ex.sample_rate, **options)
    if rng.random() < codec_share:
        wave = codec_round_trip(wave, ex.sample_rate, "mp3", float(rng.uniform(*CODEC_LEVELS)))
    return wave


@torch.no_grad()
def stretched_excerpts(model, excerpts: list, versions: int, rng: np.random.Generator, varied: bool = False,
                       stretchers: tuple[str, ...] = ("rubberband",), codec_share: float = 0.0,
                       shift_versions: int = 0, round_trip_versions: int = 0
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(n, 1 + versions + shift_versions + round_trip_versions, bands, frames) log spectrograms of the ``excerpts``, as
    recorded, stretched (each version by one of ``stretchers``, drawn: Rubber Band, its settings drawn from
    ``RUBBERBAND_VARIANTS`` when ``varied``, or a plain phase vocoder), then transposed by 1 ... ``MAX_SHIFT``
    semitones either way at the same speed, then transposed by as much and back (neither faster nor higher: factor
    1, 0 semitones); each version then through an MP3 round trip with probability ``codec_share``. Also (n, versions
    in all) their ln factors and their semitones (0 for the recording)."""
    specs, logs, semis = [], [], []
    for ex in tqdm(excerpts, desc="stretched training excerpts", unit="excerpt"):
        ln = np.concatenate([[0.0], rng.uniform(-math.log(MAX_STRETCH), math.log(MAX_STRETCH), versions),
                             np.zeros(shift_versions)])
        st = np.concatenate([np.zeros(1 + versions), rng.choice([-1, 1], shift_versions)
                             * rng.integers(1, MAX_SHIFT + 1, shift_versions)])
        n_out = int(round(rr.SECONDS * ex.sample_rate))
        waves = [ex.audio[:n_out]] + [stretch_version(ex, n_out, v, stretchers[int(rng.integers(len(stretchers)))],
                                                      rng, varied, codec_share, k) for v, k in zip(ln[1:], st[1:])]
        if round_trip_versions:  # drawn after the others, so that runs without them draw as before
            there = rng.choice([-1, 1], round_trip_versions) * rng.integers(1, MAX_SHIFT + 1, round_trip_versions)
            waves += [stretch_version(ex, n_out, 0.0, stretchers[int(rng.integers(len(stretchers)))], rng, varied,
                                      codec_share, k, round_trip=True) for k in there]
            ln, st = (np.concatenate([v, np.zeros(round_trip_versions)]) for v in (ln, st))
        specs.append(torch.stack([log_spectrogram(model, load_audio(w, model.config.sample_rate,
                                  source_sample_rate=ex.sample_rate, check_level=False).samples) for w in waves]))
        logs.append(torch.as_tensor(ln, dtype=torch.float32))
        semis.append(torch.as_tensor(st, dtype=torch.float32))
    return torch.stack(specs), torch.stack(logs), torch.stack(semis)


@torch.no_grad()
def corpus_spectrograms(model, corpus: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    clips = load_clips(corpus, concepts=model.config.concept_names)
    sr = model.config.sample_rate
    specs = torch.stack([log_spectrogram(model, load_audio(p, sr, check_level=False).samples)
                         for p in tqdm(clips.paths, desc="corpus clips", unit="clip")])
    return specs, torch.as_tensor(clips.concepts).float(), torch.as_tensor(clips.targets).float()


def fine_tune(model, labelled, recorded, *, steps: int, batch: int, lr: float, weight: float, seed: int,
              trainable: tuple[str, ...] = TRAINABLE, corpus_anchor: float = 0.0, invariance: float = 0.0,
              overlays: torch.Tensor | None = None, overlay_anchor: float = 0.0, clash_margin: float = 0.0,
              round_trips: int = 0, round_trip_weight: float = 0.0, reading_of=None, note_weight: float = 0.0,
              band_shift: float = 0.0) -> list[dict]:
    """Continue ``model``'s backbone in place; returns the loss history. ``corpus_anchor`` weighs one more term:
    every concept of the corpus clips stays where the frozen default puts it (in sd over the recorded excerpts).
    ``invariance`` weighs another: every concept but tempo and register of every stretched, transposed (or encoded)
    version stays where the frozen default puts the recording's. By the corpus's definitions a stretch changes the
    tempo rating only and a transposition the register only (``REGISTER_PER_SEMITONE``; two versions' register
    difference is that term's second half): mode, dynamics, articulation (note lengths relative to their spacing) and
    rhythm patterns are neither timed nor pitched. ``overlay_anchor`` weighs a last one: every concept of the
    excerpts mixed with a copy a semitone up, and an octave up (``overlays``), stays where the frozen default puts it,
    so that ignoring a vocoder's artefacts does not teach dissonance to ignore a real clash. ``clash_margin`` weighs a
    hinge on the same overlays: the semitone clash should read at least ``CLASH_MARGIN_SD`` more dissonant than the
    octave. By the corpus's definition dissonance counts clashing intervals, and an octave adds none; the anchor only
    keeps the frozen default's reading, which lets the clash's lead shrink where that reading was small already.
    ``round_trip_weight`` adds that much weight to the invariance of the mode-related concepts (the benchmark's
    ``MODE_CONCEPTS``) in the last ``round_trips`` versions, the transposition round trips: nothing changes them by
    the definitions, and they are the benchmark's control. ``reading_of``, a frozen model, replaces the base as the
    source of the recordings' reading that the anchor and the invariance hold (the corpus and overlay anchors keep the
    base's): a continuation of a continuation then keeps an earlier model's reading of unprocessed recordings
    instead of letting it drift a little further with every run. ``note_weight`` weighs the transcriber's own term
    (train ``backbone.salience`` with it): its note and melody probabilities on the round trips stay where the frozen
    base hears the unprocessed recording, and on the recording and the corpus clips where the base hears them. A
    round trip keeps every note and its timing, and ``studies/round_trip_paths.py`` found the whole of its move on the
    mode concepts in what the frozen transcriber's notes feed. ``band_shift`` weighs one more copy of each recording
    per step, its log spectrogram's bands moved by 1 ... ``MAX_SHIFT`` semitones either way (``transposition_matrices``,
    no vocoder): every concept but tempo and register held at the recording's reading (the mode-related ones
    ``1 + round_trip_weight`` times as hard), register moved by the definition; with ``note_weight``, its notes are
    the base's notes of the recording moved by as many semitones (pitches moved in from outside the range left out)."""
    teacher = copy.deepcopy(model).eval()
    specs_c, concepts, targets = labelled
    specs_r, ln_r, semis_r = recorded
    ref = batched_concepts(teacher if reading_of is None else reading_of.eval(), specs_r[:, 0])
    ref_c = batched_concepts(teacher, specs_c) if corpus_anchor else None
    ref_o = batched_concepts(teacher, overlays.flatten(0, 1)).reshape(*overlays.shape[:2], -1) if overlay_anchor else None
    dissonance = list(model.config.concept_names).index("dissonance")
    sd = ref.std(0).clamp_min(1e-6)
    tempo = list(model.config.concept_names).index("tempo")
    register = list(model.config.concept_names).index("register")
    moving = [tempo] + ([register] if semis_r.any() else [])
    untimed_cols = [k for k in range(len(model.config.concept_names)) if k not in moving]
    settings = TrainSettings(setup="joint")
    model.eval()  # batch norm keeps its statistics, no dropout: only the weights move
    params = [p for name, p in model.named_parameters() if name.startswith(trainable)]
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n_versions = specs_r.shape[1]
    names = list(model.config.concept_names)
    mode_cols = torch.tensor([c in rr.MODE_CONCEPTS for c in (names[k] for k in untimed_cols)])

    def weights(versions: torch.Tensor) -> torch.Tensor:
        """(rows,) version indices -> (rows, untimed columns) invariance weights: 1, and 1 + ``round_trip_weight``
        for a round trip's mode-related concepts."""
        trip = versions >= n_versions - round_trips  # the last ``round_trips`` versions (none when 0)
        return 1.0 + round_trip_weight * (trip[:, None] & mode_cols[None, :]).float()

    held_cols = [k for k in range(len(names)) if k not in (tempo, register)]
    held_mode = torch.tensor([names[k] in rr.MODE_CONCEPTS for k in held_cols])
    bands_moved = transposition_matrices(model.config.frontend, MAX_SHIFT) if band_shift else None
    history = []
    for step in tqdm(range(steps), desc="stretch equivariance", unit="step"):
        i = torch.randint(len(specs_c), (batch,), generator=gen)
        supervised = batch_loss(model, settings, model.frontend.normalize(specs_c[i]), concepts[i], targets[i])
        j = torch.randint(len(specs_r), (batch,), generator=gen)
        a = torch.randint(n_versions, (batch,), generator=gen)  # any version, the recording included
        b = (a + torch.randint(1, n_versions, (batch,), generator=gen)) % n_versions  # another one
        out, logits = concepts_and_notes(model, torch.cat([specs_r[j, 0], specs_r[j, a], specs_r[j, b]]))
        anchor = (((out[:batch] - ref[j]) / sd) ** 2).mean()
        moved = out[2 * batch:, moving] - out[batch:2 * batch, moving]
        expected = torch.stack([TEMPO_PER_LN * (ln_r[j, b] - ln_r[j, a]),
                                REGISTER_PER_SEMITONE * (semis_r[j, b] - semis_r[j, a])], 1)[:, :len(moving)]
        equivariance = (((moved - expected) / sd[moving]) ** 2).mean()
        loss = supervised + weight * (anchor + equivariance) / 2
        record = {"step": step, "supervised": supervised.item(), "anchor": anchor.item(),
                  "equivariance": equivariance.item()}
        if invariance:
            kept = (((out[batch:] - ref[j].repeat(2, 1)) / sd)[:, untimed_cols] ** 2 * weights(torch.cat([a, b]))).mean()
            loss = loss + invariance * kept
            record["invariance"] = kept.item()
        if corpus_anchor or note_weight:
            out_c, logits_c = concepts_and_notes(model, specs_c[i])
        if corpus_anchor:
            held = (((out_c - ref_c[i]) / sd) ** 2).mean()
            loss = loss + corpus_anchor * held
            record["corpus_anchor"] = held.item()
        if note_weight:
            # rows whose notes are the recording's: the recording itself and its round trips (never a stretch)
            version = torch.cat([torch.zeros_like(a), a, b])
            same_notes = (version == 0) | (version >= n_versions - round_trips)
            with torch.no_grad():
                heard = note_probs(teacher, torch.cat([specs_r[j, 0], specs_c[i]]))
            heard_r = heard[:batch]  # the band shift's notes below are these, moved
            target = torch.cat([heard_r.repeat(3, 1, 1, 1)[same_notes], heard[batch:]])
            probs = torch.sigmoid(torch.cat([logits[same_notes], logits_c]))
            notes = ((probs - target) ** 2).sum(2).mean()  # summed over pitches, mean over rows, voices and frames
            loss = loss + note_weight * notes
            record["notes"] = notes.item()
        if band_shift:
            k = torch.randint(1, MAX_SHIFT + 1, (batch,), generator=gen) * (2 * torch.randint(2, (batch,), generator=gen) - 1)
            moved_spec = torch.einsum("nbc,ncf->nbf", bands_moved[k + MAX_SHIFT], specs_r[j, 0])
            out_s, logits_s = concepts_and_notes(model, moved_spec)
            kept_s = (((out_s - ref[j]) / sd)[:, held_cols] ** 2 * (1.0 + round_trip_weight * held_mode.float())).mean()
            rise = ((out_s[:, register] - out[:batch, register] - REGISTER_PER_SEMITONE * k) / sd[register]) ** 2
            shifted = (kept_s * len(held_cols) + rise.mean()) / (len(held_cols) + 1)
            loss = loss + band_shift * shifted
            record["band_shift"] = shifted.item()
            if note_weight:
                target = torch.stack([torch.roll(h, int(s), dims=1) for h, s in zip(heard_r, k)])
                pitch = torch.arange(heard_r.shape[2])[None, :]
                inside = ((pitch >= k[:, None]) & (pitch < heard_r.shape[2] + k[:, None])).float()  # (batch, pitches)
                diff = (torch.sigmoid(logits_s) - target) ** 2 * inside[:, None, :, None]
                notes_s = diff.sum(2).mean()
                loss = loss + note_weight * notes_s
                record["band_shift_notes"] = notes_s.item()
        if overlay_anchor or clash_margin:
            mixed = concepts_of_logspec(model, overlays[j].flatten(0, 1))
        if overlay_anchor:
            kept_o = (((mixed - ref_o[j].flatten(0, 1)) / sd) ** 2).mean()
            loss = loss + overlay_anchor * kept_o
            record["overlay_anchor"] = kept_o.item()
        if clash_margin:
            lead = (mixed[0::2, dissonance] - mixed[1::2, dissonance]) / sd[dissonance]  # clash minus octave
            short = (torch.relu(CLASH_MARGIN_SD - lead) ** 2).mean()
            loss = loss + clash_margin * short
            record["clash_margin"] = short.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(record)
    return history


def concepts_and_notes(model, logspec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, bands, frames) un-normalised log spectrograms -> raw concepts (B, K) and the transcriber's note-roll
    logits (B, 2, pitches, frames), from one pass."""
    embedding, logits = model.backbone.forward_with_salience(model.frontend.normalize(logspec))
    return model.concept_layer(embedding), logits


def note_probs(model, logspec: torch.Tensor) -> torch.Tensor:
    """The transcriber's note and melody probabilities (B, 2, pitches, frames) alone."""
    bb = model.backbone
    return torch.sigmoid(bb.salience(bb.whiten(model.frontend.normalize(logspec))))


def refit_head(model, labelled) -> None:
    """Refit ``model``'s additive head on the corpus clips' concepts (its own ``fit``, the same elastic net), as
    ``training.structural`` does after changing a concept: the emotions follow the concepts the backbone now gives."""
    specs_c, _, targets = labelled
    low, high = model.config.concept_scale
    model.head.fit(np.clip(batched_concepts(model, specs_c).numpy(), low, high), targets.numpy())


@torch.no_grad()
def tempo_following(models: dict, excerpts) -> dict[str, dict[str, dict]]:
    """Per model and stretcher (the benchmark's librosa, and Rubber Band): the mean per-excerpt Spearman r of the
    tempo concept with the benchmark's stretch factors (and without factor 1, the one version no stretcher
    processed), the mean tempo change from factor 1 per factor, and the mean change per unit ln factor against
    the corpus's ``TEMPO_PER_LN``."""
    any_model = next(iter(models.values()))
    tools = {"librosa": lambda ex, n, f: rr.stretch(ex.samples, n, f),
             "rubberband": lambda ex, n, f: rubberband_stretch(ex.samples, n, f, ex.sample_rate)}
    specs = {t: [] for t in tools}
    for ex in tqdm(excerpts, desc="stretching the scoring excerpts", unit="excerpt"):
        n = int(round(rr.SECONDS * ex.sample_rate))
        for tool, fn in tools.items():
            specs[tool].append(torch.stack([log_spectrogram(any_model, load_audio(
                fn(ex, n, f), any_model.config.sample_rate, source_sample_rate=ex.sample_rate,
                check_level=False).samples) for f in rr.STRETCH_FACTORS]))
    factors = np.array(rr.STRETCH_FACTORS)
    unit = int(np.flatnonzero(factors == 1.0)[0])
    out = {}
    for label, model in models.items():
        tempo = list(model.config.concept_names).index("tempo")
        out[label] = {}
        for tool, per in specs.items():
            stacked = torch.stack(per)  # (excerpts, factors, bands, frames)
            t = batched_concepts(model, stacked.flatten(0, 1))[:, tempo].reshape(stacked.shape[:2]).numpy()
            out[label][tool] = {
                "spearman": float(np.nanmean([spearmanr(factors, row)[0] for row in t])),
                "spearman_without_1": float(np.nanmean([spearmanr(np.delete(factors, unit), np.delete(row, unit))[0]
                                                        for row in t])),
                "change_from_1": [float(v) for v in (t - t[:, unit:unit + 1]).mean(0)],
                "slope_per_ln": float(np.mean(np.polyfit(np.log(factors), t.T, 1)[0]))}
    return out


def zoo_name_of(sha: str) -> str | None:
    """The zoo entry (shipped or superseded) whose pinned weights these are, by sha256: a folder copy of an entry, e.g.
    from git history or its manifest recipe, is named as the entry (its config's name is whatever its base's was)."""
    return next((e.name for e in read_registry().values() if e.sha256 == sha), None)


@torch.no_grad()
def clash_following(models: dict, excerpts) -> dict[str, dict]:
    """Per model: the benchmark's clash row on these excerpts (its ``rr.overlay``, librosa's shift): the share whose
    dissonance rises more with a copy a semitone up than with a copy an octave up, and the mean rises in sd."""
    any_model = next(iter(models.values()))
    specs = []
    for ex in tqdm(excerpts, desc="overlaying the scoring excerpts", unit="excerpt"):
        x = ex.audio.astype(np.float32)
        specs.append(torch.stack([log_spectrogram(any_model, load_audio(
            v, any_model.config.sample_rate, source_sample_rate=ex.sample_rate, check_level=False).samples)
            for v in (x, rr.overlay(x, ex.sample_rate, rr.CLASH_SEMITONES), rr.overlay(x, ex.sample_rate, rr.OCTAVE_SEMITONES))]))
    stacked = torch.stack(specs)
    out = {}
    for label, model in models.items():
        d = list(model.config.concept_names).index("dissonance")
        c = batched_concepts(model, stacked.flatten(0, 1))[:, d].reshape(stacked.shape[:2]).numpy()
        out[label] = rr.clash_row(c[:, 0], c[:, 1], c[:, 2], c[:, 0].std())
    return out


def save_family(student, teacher, save: Path, args: argparse.Namespace, seconds: float, recorded_used: int,
                reading_of=None) -> Path:
    """Write the continued model as ``midlevel train`` lays a family out (``SAVE/models/joint-linear`` and
    ``SAVE/results.json``), with what trained it in its metadata, so ``scripts/build_zoo.py --add`` can ship it: the
    corpus it saw last, the zoo entry it continued (by sha256), the parameters that moved, and this study's terms."""
    sha = weights_sha256(teacher)
    terms = {k: getattr(args, k) for k in ("steps", "batch", "lr", "weight", "corpus_anchor", "invariance",
                                           "overlay_anchor", "clash_margin", "versions",
                                           "varied", "stretchers", "codec_share", "shift_versions", "round_trip_versions",
                                           "round_trip_weight", "note_weight", "band_shift", "refit_head")}
    if reading_of is not None:
        held = weights_sha256(reading_of)
        terms["reading_of"] = {"model": zoo_name_of(held) or str(args.reading_of), "weights_sha256": held}
    terms["recorded_excerpts"] = recorded_used  # drawn, not asked for: tracks too short or silent give fewer
    if args.band_shift or args.shift_versions or args.round_trip_versions:
        terms["max_shift"] = MAX_SHIFT
    if args.clash_margin:
        terms["clash_margin_sd"] = CLASH_MARGIN_SD  # the card says it (runs before this key had 1 sd)
    student.config.metadata = {
        "corpus": str(args.corpus),
        # the zoo entry's name when the base is its weights (installed, or a copy from git history): the cards then read
        # its training from the zoo's results; a folder of another build is named by its path
        "init_from": {"model": zoo_name_of(sha) or str(args.base), "weights_sha256": sha},
        "settings": {"trainable": args.trainable.split(",")},
        "stretch_equivariance": {**terms, "recorded_packages": list(args.packages), "max_stretch": MAX_STRETCH,
                                 "tempo_per_ln": TEMPO_PER_LN}}
    folder = student.save_pretrained(save / "models" / "joint-linear")
    summary = {"epochs": 0, "best_epoch": 0, "seconds_per_epoch": 0.0, "seconds_fastest_epoch": 0.0,
               "seconds_total": seconds, "continued": {**terms, "seconds": seconds,
                                                       "script": "studies/stretch_equivariance.py"},
               # the continuation's corpus has training pieces only: no test split of its own (build_zoo scores the
               # zoo's held-out corpus)
               "valid": None, "test": None}
    (save / "results.json").write_text(json.dumps({"models": {"joint-linear": summary}}, indent=1) + "\n")
    return folder


def thinned(history: list[dict], every: int = 10, last: int = 20) -> list[dict]:
    """Every ``every``-th step and the last ``last`` (the markdown's mean): the results file stays small."""
    return [h for k, h in enumerate(history) if h["step"] % every == 0 or k >= len(history) - last]


def stretchers_said(s: dict) -> str:
    """The training versions' tools in words, from a run's settings."""
    said = {"rubberband": "Rubber Band" + (" (settings drawn per version)" if s.get("varied") else ""),
            "vocoder": f"a plain phase vocoder (frames of {'/'.join(map(str, VOCODER_FFTS))} drawn)"}
    tools = stretchers_drawn_said(s.get("stretchers", "rubberband"), said)
    shifts = (f", and {s['shift_versions']} versions transposed by 1 ... {MAX_SHIFT} semitones either way"
              if s.get("shift_versions") else "")
    shifts += (f", and {s['round_trip_versions']} versions transposed by 1 ... {MAX_SHIFT} semitones either way and back"
               if s.get("round_trip_versions") else "")
    shifts += (f" (their mode-related concepts held {1 + s['round_trip_weight']:g} times as hard)"
               if s.get("round_trip_versions") and s.get("round_trip_weight") else "")
    codec = f", then an MP3 round trip for {s['codec_share']:.0%} of them" if s.get("codec_share") else ""
    return tools + shifts + codec


def invariance_said(s: dict) -> str:
    extra = [f"corpus anchor {s['corpus_anchor']:g}" if s.get("corpus_anchor") else "",
             f"every concept but tempo{' and register' if s.get('shift_versions') else ''} of every version kept "
             f"at the recording's (weight {s['invariance']:g})"
             if s.get("invariance") else "",
             f"clash lead of {CLASH_MARGIN_SD:g} sd over the octave asked (weight {s['clash_margin']:g})"
             if s.get("clash_margin") else "",
             f"the recording's reading (anchor and invariance) taken from `{s['reading_of']}`, not the base"
             if s.get("reading_of") else ""]
    return "".join(f"; {e}" for e in extra if e)


def markdown(res: dict) -> str:
    s = res["settings"]
    lines = ["# Stretch equivariance on recorded music beside the supervised loss", "",
             f"Backbone of `{s.get('base', MODEL)}` continued {s['steps']} steps (batch {s['batch']} corpus clips + {s['batch']} recorded "
             f"excerpts x 3 versions; lr {s['lr']:g}, weight {s['weight']:g}) on {s['corpus_clips']} clips of "
             f"`{s['corpus']}` and {s['recorded_excerpts']} excerpts of {', '.join(s.get('packages', PACKAGES))}, each as recorded and "
             f"stretched by {stretchers_said(s)} at {s['versions']} factors in 1/{MAX_STRETCH:g} ... {MAX_STRETCH:g}"
             f"{invariance_said(s)}; scored on "
             f"{s['eval_excerpts']} excerpts of the benchmark's packages (seed {s['seed']}) and on the controlled "
             f"held-out corpora. One run, {res['minutes']:.0f} min.", "",
             *behaviour_table(res["models"]), "",
             f"Tempo against the stretch factors {', '.join(f'{f:g}' for f in rr.STRETCH_FACTORS)} (mean per-excerpt "
             f"Spearman r; issue 30's bar 0.9 with librosa) and its mean change per unit ln factor (the corpus's "
             f"definition: {TEMPO_PER_LN:.2f}):", "",
             "| model | stretcher | Spearman | without factor 1 | slope | mean change from factor 1 at "
             + ", ".join(f"{f:g}" for f in rr.STRETCH_FACTORS) + " |", "|---|---|---|---|---|---|"]
    expected = ", ".join(f"{TEMPO_PER_LN * math.log(f):+.2f}" for f in rr.STRETCH_FACTORS)
    for label, r in res["tempo"].items():
        for tool, t in r.items():
            changes = ", ".join(f"{v:+.2f}" for v in t["change_from_1"]) if "change_from_1" in t else "-"
            without = f"{t['spearman_without_1']:.2f}" if "spearman_without_1" in t else "-"
            lines.append(f"| {label} | {tool} | {t['spearman']:.2f} | {without} | {t['slope_per_ln']:.2f} | {changes} |")
    lines.append(f"| *the corpus's definition* | | 1 | 1 | {TEMPO_PER_LN:.2f} | {expected} |")
    if "clash" in res:
        lines += ["", "Clash (the benchmark's overlays, librosa's shift): dissonance rises more with a copy a semitone up "
                  "than with a copy an octave up (issue 30's bar 95%):", "",
                  "| model | share | mean rise, clash (sd) | mean rise, octave (sd) |", "|---|---|---|---|"]
        lines += [f"| {label} | {c['dissonance_up']:.0%} | {c['rise_clash_sd']:+.2f} | {c['rise_octave_sd']:+.2f} |"
                  for label, c in res["clash"].items()]
    lines += ["", loss_line(res["history"])]
    return "\n".join(lines) + "\n"


#: settings that decide the training versions and overlays (``cached_versions``'s key)
VERSION_SETTINGS = ("recorded_excerpts", "packages", "versions", "varied", "stretchers", "codec_share",
                    "shift_versions", "round_trip_versions", "overlay_anchor", "clash_margin")


def version_key(args, model) -> tuple[dict, str]:
    """The settings the cached versions depend on, and their key: ``VERSION_SETTINGS`` and the front-end's settings
    (the versions are un-normalised log spectrograms, so no trained weight enters them, and a continuation of a
    continuation reads the same cache)."""
    settings = {k: getattr(args, k) for k in VERSION_SETTINGS} | {
        "frontend": dataclasses.asdict(model.config.frontend), "window_samples": model.config.window_samples}
    return settings, hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:20]


def cached_versions(args, teacher, training, rng: np.random.Generator):
    """``stretched_excerpts`` and ``overlay_excerpts`` of the excerpts ``training()`` decodes, read from ``--cache``
    when an earlier run with the same version settings (and the same front-end) wrote them: their 30-40 minutes,
    and the decoding, are then skipped. The cache is safetensors; on a hit, ``rng`` is advanced by nothing, so a run reading the cache draws the
    same as the run that wrote it only up to here (training draws from its own seeded generator)."""
    from safetensors.torch import load_file, save_file

    settings, key = version_key(args, teacher)
    path = Path(args.cache) / f"versions-{key}.safetensors" if args.cache else None
    if path is not None and path.is_file():
        t = load_file(path)
        return (t["specs"], t["ln"], t["semitones"]), t.get("overlays")
    excerpts = training()  # decoded once, for the versions and the overlays
    recorded = stretched_excerpts(teacher, excerpts, args.versions, rng, args.varied,
                                  tuple(args.stretchers.split(",")), args.codec_share, args.shift_versions,
                                  args.round_trip_versions)
    overlays = overlay_excerpts(teacher, excerpts) if args.overlay_anchor or args.clash_margin else None
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = dict(zip(("specs", "ln", "semitones"), (t.contiguous() for t in recorded)))
        tensors |= {"overlays": overlays.contiguous()} if overlays is not None else {}
        save_file(tensors, str(path.with_suffix(".tmp")), metadata={"settings": json.dumps(settings, default=str)})
        path.with_suffix(".tmp").replace(path)
    return recorded, overlays


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default=MODEL, help="the model to continue: MODEL's zoo name while it is installed, "
                   "else its folder (python scripts/build_zoo.py --entry MODEL --train rebuilds it; or extract it from "
                   "git history, src/midlevel/zoo/weights/MODEL before the commit that superseded it)")
    add_continuation_options(p)
    p.add_argument("--versions", type=int, default=4, help="stretched versions per training excerpt")
    p.add_argument("--packages", type=lambda v: tuple(v.split(",")), default=PACKAGES,
                   help="comma-separated Debian packages of recorded music the training excerpts come from (never the "
                   "benchmark's)")
    p.add_argument("--varied", action="store_true", help="draw Rubber Band's settings per version (RUBBERBAND_VARIANTS)")
    p.add_argument("--stretchers", default="rubberband",
                   help="comma-separated tools drawn per training version: rubberband, vocoder (a plain phase vocoder); "
                   "a tool named twice is drawn twice as often")
    p.add_argument("--shift-versions", type=int, default=0,
                   help="transposed versions per training excerpt (1 ... MAX_SHIFT semitones either way, by a drawn "
                   "stretcher's pitch shift): register moves by the corpus's definition, the other concepts but tempo stay")
    p.add_argument("--round-trip-versions", type=int, default=0,
                   help="versions per training excerpt transposed by 1 ... MAX_SHIFT semitones either way and back by a "
                   "drawn stretcher (the benchmark's round-trip control, with training's tools): nothing moves by the "
                   "definitions, so --invariance holds every concept but tempo and the stretch term asks tempo to stay")
    p.add_argument("--round-trip-weight", type=float, default=0.0,
                   help="extra --invariance weight on the mode-related concepts of the round-trip versions")
    p.add_argument("--note-weight", type=float, default=0.0,
                   help="weight of holding the transcriber's notes on the round trips at the base's notes of the "
                   "recording (and on the recording and corpus clips at the base's); add backbone.salience to --trainable")
    p.add_argument("--band-shift", type=float, default=0.0,
                   help="weight of one band-shifted copy of each recording per step (1 ... MAX_SHIFT semitones either way, "
                   "no vocoder): concepts held but register, which moves by the definition; with --note-weight its notes "
                   "are the recording's moved")
    p.add_argument("--reading-of", help="a model (zoo name or folder) whose reading of the unprocessed recordings the "
                   "anchor and --invariance hold, instead of the base's (the lineage's root: no drift across runs)")
    p.add_argument("--cache", help="folder where the training versions and overlays are kept (safetensors) and read "
                   "back by a later run with the same version settings and front-end")
    p.add_argument("--codec-share", type=float, default=0.0,
                   help="share of training versions that go through an MP3 round trip after the stretch")
    p.add_argument("--invariance", type=float, default=0.0,
                   help="weight of keeping every concept but tempo of every version at the recording's default reading")
    p.add_argument("--overlay-anchor", type=float, default=0.0,
                   help="weight of keeping the concepts of the excerpts mixed with a copy a semitone (and an octave) up "
                   "where the frozen default puts them")
    p.add_argument("--clash-margin", type=float, default=0.0,
                   help="weight of a hinge asking the semitone-clash overlay to read CLASH_MARGIN_SD more dissonant than "
                   "the octave overlay")
    p.add_argument("--corpus-anchor", type=float, default=0.0,
                   help="weight of keeping the corpus clips' concepts where the frozen default puts them")
    p.add_argument("--refit-head", action="store_true", help="refit the additive head on the corpus clips' concepts")
    p.add_argument("--save", help="write the continued model to SAVE/models/joint-linear (and SAVE/results.json)")
    p.add_argument("--rescore", help="no training: recompute the tempo rows of this earlier results JSON with the "
                   "continued model saved in --save (same excerpts), and rewrite it")
    p.add_argument("--out", default="studies/results/stretch_equivariance")
    args = p.parse_args()
    rng, start = start_run()
    teacher = load(args.base, replace_superseded=False)  # never its successor in its place
    if args.rescore:
        res = json.loads(Path(args.rescore).read_text())
        excerpts = recorded_excerpts(res["settings"]["eval_excerpts"], res["settings"]["seed"])
        saved = Path(args.save) / "models" / "joint-linear"  # the family layout, or a flat folder of an older run
        continued = AudioModel.from_pretrained(saved if saved.is_dir() else args.save)
        res["tempo"] = tempo_following({"the default": teacher, "continued": continued}, excerpts)
        res["clash"] = clash_following({"the default": teacher, "continued": continued}, excerpts)
        res["history"] = thinned(res["history"])
        write_results(res, Path(args.rescore).with_suffix(""), markdown)
        return 0
    labelled = corpus_spectrograms(teacher, args.corpus)
    if set(args.packages) & set(rr.DEFAULT_PACKAGES):
        p.error(f"--packages must leave out the benchmark's: {', '.join(sorted(set(args.packages) & set(rr.DEFAULT_PACKAGES)))}")
    recorded, overlays = cached_versions(
        args, teacher, lambda: training_excerpts(args.recorded_excerpts, seed=0, packages=args.packages), rng)
    reading_of = load(args.reading_of, replace_superseded=False) if args.reading_of else None
    student = copy.deepcopy(teacher)
    trained = time.perf_counter()
    history = fine_tune(student, labelled, recorded, steps=args.steps, batch=args.batch, lr=args.lr,
                        weight=args.weight, seed=0, trainable=tuple(args.trainable.split(",")),
                        corpus_anchor=args.corpus_anchor, invariance=args.invariance, overlays=overlays,
                        overlay_anchor=args.overlay_anchor, clash_margin=args.clash_margin,
                        round_trips=args.round_trip_versions, round_trip_weight=args.round_trip_weight,
                        reading_of=reading_of, note_weight=args.note_weight, band_shift=args.band_shift)
    if args.refit_head:
        refit_head(student, labelled)
    if args.save:
        save_family(student, teacher, Path(args.save), args, time.perf_counter() - trained, len(recorded[0]),
                    reading_of)
    res, excerpts, corpora = continuation_results(args, len(labelled[0]), len(recorded[0]), thinned(history))
    models = {"the default": teacher, "continued": student}
    res["tempo"] = tempo_following(models, excerpts)
    res["clash"] = clash_following(models, excerpts)
    score_and_write(res, models, excerpts, corpora, start, Path(args.out), markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
