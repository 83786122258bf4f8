"""Performance factors: sampled per clip, then applied to a piece's notes to make a ``Clip``.

Sampling (``sample_factors``) draws every factor independently of the others from the ranges in
``FACTOR_RANGES`` (documented in docs/controlled_corpus.md). Realisation (``realize``) turns the
piece + factors into timed note events. All randomness inside realisation (which notes get wrong,
where clusters go, the jitter draws) comes from sub-streams keyed by ``key`` and by the step, and
every step draws the same numbers whatever the factor values, so two realisations of the same key
that differ in one factor differ only by what that factor does (the paired tests rely on this).

Order of operations on the excerpt (score time, quarter lengths), then performance:

1. window of the piece starting at a bar line (looped if the piece is shorter than the clip);
2. texture (keep all parts, the outer voices, or the melody only);
3. key finding on the excerpt, then mode change (major <-> minor about the found tonic);
4. tonal blur: modulations (later segments transposed) and chromatic wrong notes;
5. melody octave displacement;
6. dissonance injection: cluster notes (a second or semitone next to a chord tone, below the
   melody), tritones below the melody, and a detuned double of the melody on its own channel;
7. register: transposition of everything by whole semitones;
8. performance: tempo map with rubato, onset jitter, articulation (sounding length =
   ratio x notated length), velocities (level, spread, melody boost), GM programs;
9. optional percussion layer (kick/snare/hi-hat on the bar grid, with syncopation);
10. cut to the clip length in seconds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .sources import Piece
from .theory import best_key, metric_level, pc_profile

# ---------------------------------------------------------------------------- instruments

ENSEMBLES: dict[str, tuple[float, tuple[int, ...]]] = {
    # name: (weight, GM programs from the top part down; the last one is the bass)
    "piano": (0.17, (0, 0, 0, 0, 0, 0)),
    "strings": (0.14, (40, 40, 41, 41, 42, 43)),
    "winds": (0.10, (73, 68, 71, 60, 70, 70)),
    "brass": (0.07, (56, 56, 60, 60, 57, 58)),
    "organ": (0.08, (19, 19, 19, 19, 19, 19)),
    "guitar": (0.08, (24, 25, 24, 25, 24, 32)),
    "mallets": (0.06, (11, 12, 11, 12, 12, 12)),
    "choir": (0.06, (52, 53, 52, 53, 52, 52)),
    "synth": (0.07, (80, 81, 89, 89, 88, 38)),
    "distorted": (0.06, (30, 29, 30, 29, 30, 33)),
    "mixed": (0.11, ()),
}
"""Instrumentation families with sampling weights (sum 1)."""

MIXED_POOL = (0, 4, 6, 11, 12, 19, 21, 22, 24, 25, 29, 30, 40, 41, 42, 46, 48, 52, 56, 57, 60, 65, 68, 71, 73, 80, 81, 89)
BASS_POOL = (32, 33, 38, 42, 43, 57, 58, 70, 0, 19)

# Effective audible decay (s) of the note body for percussive / plucked programs: a note longer
# than this is heard as released anyway, whatever its notated length. Sustaining programs: inf.
DECAY_S: dict[int, float] = {}
for _p in range(0, 8):  # pianos
    DECAY_S[_p] = 1.6
for _p in range(8, 16):  # chromatic percussion: celesta, glockenspiel, music box, vibraphone, marimba, ...
    DECAY_S[_p] = 0.6
DECAY_S[11] = 1.2  # vibraphone rings longer
for _p in range(24, 29):  # guitars (clean)
    DECAY_S[_p] = 1.2
for _p in (32, 33, 34, 35, 36, 37, 38, 39):  # basses
    DECAY_S[_p] = 1.2
for _p in (45, 46, 47, 104, 105, 106, 107, 108):  # pizzicato, harp, timpani, ethnic plucked
    DECAY_S[_p] = 0.5

# Noisiness of a program's timbre, 0 clean .. 1 noisy (distortion, buzzy synth leads).
TIMBRE_NOISE: dict[int, float] = {29: 0.7, 30: 1.0, 84: 0.8, 80: 0.4, 81: 0.6, 87: 0.6, 62: 0.3, 63: 0.3, 38: 0.3, 39: 0.3}

MODULATION_STEPS = (1, 2, 3, 4, 6, 8, 9, 10, 11)
"""Semitone shifts (mod 12) a modulation may make; 5 and 7 (closely related keys) are left out."""

KIND_SCORE, KIND_INJECTED, KIND_DETUNED, KIND_DRUM = 0, 1, 2, 3
GM_KICK, GM_SNARE, GM_HAT = 36, 38, 42


@dataclass
class Factors:
    """Everything sampled for one clip. All fields are recorded in factors.csv."""

    piece_id: str
    excerpt_start_ql: float
    tempo_bpm: float  # beats per minute of the piece's beat unit
    articulation_ratio: float  # sounding length / notated length: 0.15 staccato .. 1.0 legato
    jitter: float  # sd of onset timing noise, in beats
    rubato: float  # depth of the sinusoidal tempo modulation (fraction of the tempo)
    rubato_period: float  # beats
    rubato_phase: float  # radians
    velocity: float  # mean MIDI velocity (loudness)
    velocity_spread: float  # sd of per-note velocity
    melody_boost: float  # velocity added to the melody part
    ensemble: str
    programs: tuple[int, ...]  # GM program per part, top part first (6 entries)
    texture: str  # full | outer | melody
    transpose: int  # semitones (register)
    mode: str  # keep | major | minor
    wrong_notes: float  # probability a note is moved by a semitone
    modulation_shifts: tuple[int, ...]  # semitone shift at each modulation (0, 1 or 2 of them)
    cluster_rate: float  # dissonance injection level 0..1
    detune_cents: float  # detuned double of the melody (0 = none)
    octave_displacement: float  # probability a melody note jumps an octave
    percussion: bool
    perc_syncopation: float  # 0 straight .. 1 heavily syncopated
    perc_subdivision: int  # hi-hat steps per beat: 2 (eighths) or 4 (sixteenths); 3/6 in compound metre

    def to_record(self) -> dict:
        d = asdict(self)
        d["programs"] = list(self.programs)
        d["modulation_shifts"] = list(self.modulation_shifts)
        return d

    @classmethod
    def from_record(cls, d: dict) -> "Factors":
        d = dict(d)
        d["programs"] = tuple(int(p) for p in d["programs"])
        d["modulation_shifts"] = tuple(int(p) for p in d["modulation_shifts"])
        return cls(**d)

    def replace(self, **changes) -> "Factors":
        d = asdict(self)
        d.update(changes)
        d["programs"] = tuple(d["programs"])
        d["modulation_shifts"] = tuple(d["modulation_shifts"])
        return Factors(**d)


FACTOR_RANGES: dict[str, str] = {
    "tempo_bpm": "log-uniform 50-170 beats/min (beat = the time signature's beat unit)",
    "articulation_ratio": "uniform 0.15-1.0 (per note times exp(N(0, 0.08^2)))",
    "jitter": "0 with p=0.35, else uniform 0.01-0.18 beats",
    "rubato": "0 with p=0.5, else uniform 0.04-0.30; period uniform 4-12 beats; phase uniform",
    "velocity": "uniform 30-118",
    "velocity_spread": "uniform 0-18",
    "melody_boost": "uniform 0-24",
    "ensemble": "families of ENSEMBLES by weight; 'mixed' draws each part from MIXED_POOL (bass from BASS_POOL)",
    "texture": "full p=0.6, outer voices p=0.2, melody only p=0.2 (pieces with >= 3 parts; 2 parts: full 0.7 / melody 0.3)",
    "transpose": "integer uniform -12..+12 semitones",
    "mode": "keep p=0.2, major p=0.4, minor p=0.4",
    "wrong_notes": "0 with p=0.45, else uniform 0.04-0.30",
    "modulation_shifts": "none p=0.55, one p=0.3, two p=0.15; each shift from MODULATION_STEPS",
    "cluster_rate": "0 with p=0.35, else uniform 0.1-1.0",
    "detune_cents": "0 with p=0.6, else uniform 15-50 cents",
    "octave_displacement": "0 with p=0.4, else uniform 0.1-0.5",
    "percussion": "p=0.4",
    "perc_syncopation": "uniform 0-1 (when percussion)",
    "perc_subdivision": "2 or 4 steps per beat (3 or 6 in compound metre), p=0.5 each",
}


def _mix(rng: np.random.Generator, p_zero: float, lo: float, hi: float) -> float:
    u = rng.random()
    v = rng.uniform(lo, hi)
    return 0.0 if u < p_zero else float(v)


def _window_quarters(piece: Piece, start_ql: float, tempo_bpm: float, rubato: float, seconds: float) -> float:
    beat = float(piece.measure_beat[int(np.searchsorted(piece.measure_offsets, start_ql, side="right")) - 1])
    return seconds * tempo_bpm / 60.0 * beat * (1.0 + rubato) + 2.0 * beat


def sample_factors(rng: np.random.Generator, piece: Piece, seconds: float) -> Factors:
    """Draw one clip's factors; each factor independently, in a fixed order of draws."""
    tempo = float(np.exp(rng.uniform(np.log(50.0), np.log(170.0))))
    articulation_ratio = float(rng.uniform(0.15, 1.0))
    jitter = _mix(rng, 0.35, 0.01, 0.18)
    rubato = _mix(rng, 0.5, 0.04, 0.30)
    rubato_period = float(rng.uniform(4.0, 12.0))
    rubato_phase = float(rng.uniform(0.0, 2 * np.pi))
    velocity = float(rng.uniform(30.0, 118.0))
    velocity_spread = float(rng.uniform(0.0, 18.0))
    melody_boost = float(rng.uniform(0.0, 24.0))
    names = list(ENSEMBLES)
    w = np.array([ENSEMBLES[n][0] for n in names])
    ensemble = names[int(rng.choice(len(names), p=w / w.sum()))]
    mixed = [int(rng.choice(MIXED_POOL)) for _ in range(5)] + [int(rng.choice(BASS_POOL))]
    programs = tuple(mixed) if ensemble == "mixed" else ENSEMBLES[ensemble][1]
    u = rng.random()
    n_parts = len(piece.parts)
    if n_parts >= 3:
        texture = "full" if u < 0.6 else ("outer" if u < 0.8 else "melody")
    elif n_parts == 2:
        texture = "full" if u < 0.7 else "melody"
    else:
        texture = "full"
    transpose = int(rng.integers(-12, 13))
    u = rng.random()
    mode = "keep" if u < 0.2 else ("major" if u < 0.6 else "minor")
    wrong = _mix(rng, 0.45, 0.04, 0.30)
    u = rng.random()
    n_mod = 0 if u < 0.55 else (1 if u < 0.85 else 2)
    shifts = tuple(int(rng.choice(MODULATION_STEPS)) for _ in range(2))[:n_mod]
    cluster = _mix(rng, 0.35, 0.1, 1.0)
    detune = _mix(rng, 0.6, 15.0, 50.0)
    octave = _mix(rng, 0.4, 0.1, 0.5)
    percussion = bool(rng.random() < 0.4)
    perc_sync = float(rng.uniform(0.0, 1.0))
    perc_sub = 2 if rng.random() < 0.5 else 4
    if not percussion:
        perc_sync, perc_sub = 0.0, 2
    # excerpt start: a bar line from which the window fits, if any
    need = _window_quarters(piece, 0.0, tempo, rubato, seconds)
    offs = piece.measure_offsets
    ok = offs[(offs + need <= piece.length_ql + 1e-9) & (offs < piece.length_ql)]
    if len(ok) == 0:
        ok = offs[:1]
    # first bar line (in a random order) whose window holds at least 8 notes, else the fullest
    counts = []
    for k in rng.permutation(len(ok)):
        a = float(ok[k])
        n = sum(int(np.sum((p["onset"] >= a) & (p["onset"] < a + need))) for p in piece.parts)
        if n >= 8:
            counts = [(n, a)]
            break
        counts.append((n, a))
    start = max(counts, key=lambda c: c[0])[1] if len(counts) > 1 else counts[0][1]
    return Factors(
        piece_id=piece.ref.piece_id,
        excerpt_start_ql=start,
        tempo_bpm=tempo,
        articulation_ratio=articulation_ratio,
        jitter=jitter,
        rubato=rubato,
        rubato_period=rubato_period,
        rubato_phase=rubato_phase,
        velocity=velocity,
        velocity_spread=velocity_spread,
        melody_boost=melody_boost,
        ensemble=ensemble,
        programs=tuple(int(p) for p in programs),
        texture=texture,
        transpose=transpose,
        mode=mode,
        wrong_notes=wrong,
        modulation_shifts=shifts,
        cluster_rate=cluster,
        detune_cents=detune,
        octave_displacement=octave,
        percussion=percussion,
        perc_syncopation=perc_sync,
        perc_subdivision=perc_sub,
    )


# ---------------------------------------------------------------------------- the clip


@dataclass
class Clip:
    """Timed note events of one clip, plus what the ratings need to know about the score."""

    seconds: float
    # per note (pitched and drum), sorted by onset
    onset: np.ndarray  # s
    end: np.ndarray  # sounding end, s (may exceed `seconds`; audio is cut there)
    notated: np.ndarray  # notated length in s (the inter-onset span the note was written to fill)
    pitch: np.ndarray  # MIDI (drum: GM percussion key)
    velocity: np.ndarray  # 1..127
    part: np.ndarray  # voice index (0 = melody / top), -1 for drums
    kind: np.ndarray  # KIND_SCORE, KIND_INJECTED, KIND_DETUNED, KIND_DRUM
    program: np.ndarray  # GM program (-1 drums)
    cents: np.ndarray  # detune in cents (pitch bend)
    onset_ql: np.ndarray  # score position (quarter lengths from the excerpt start, before jitter)
    dur_ql: np.ndarray
    level: np.ndarray  # metrical level of the score position (theory.metric_level)
    beat_ql: float
    beats: np.ndarray  # score positions (ql) of the beats that start within the clip
    beat_levels: np.ndarray
    tempo_bpm: float
    tonic: int  # tonic found before the mode change
    mode_found: str
    mode_after: str
    n_parts: int
    info: dict = field(default_factory=dict)


def _substream(key, step: int) -> np.random.Generator:
    return np.random.default_rng([*key, 1000 + step])


def _excerpt(piece: Piece, start: float, span: float):
    """Notes of every part with onset in [start, start + span), looping the piece if needed."""
    period = max(float(piece.length_ql), float(piece.measure_offsets[-1]) + 1e-3)
    ons, durs, pits, parts, lev = [], [], [], [], []
    beats, beat_lev = [], []
    copies = int(np.ceil((start + span) / period)) + 1
    m_off, m_bar, m_beat, m_phase = piece.measure_offsets, piece.measure_bar, piece.measure_beat, piece.measure_phase
    for c in range(copies):
        base = c * period
        if base > start + span:
            break
        for k, p in enumerate(piece.parts):
            t = p["onset"] + base
            sel = (t >= start - 1e-9) & (t < start + span)
            if not np.any(sel):
                continue
            ons.append(t[sel] - start)
            durs.append(p["dur"][sel])
            pits.append(p["pitch"][sel])
            parts.append(np.full(int(sel.sum()), k))
            raw = p["onset"][sel]
            mi = np.clip(np.searchsorted(m_off, raw + 1e-9, side="right") - 1, 0, len(m_off) - 1)
            lev.append(metric_level(raw - m_off[mi] + m_phase[mi], m_beat[mi]))
        # beat grid of this copy
        for i in range(len(m_off)):
            m_end = m_off[i + 1] if i + 1 < len(m_off) else max(piece.length_ql, m_off[i] + m_bar[i] - m_phase[i])
            first = m_off[i] - m_phase[i]
            n_b = int(round(m_bar[i] / m_beat[i]))
            for b in range(max(n_b, 1)):
                q = first + b * m_beat[i]
                if q < m_off[i] - 1e-9 or q >= m_end - 1e-9:
                    continue
                t = q + base
                if start - 1e-9 <= t < start + span:
                    beats.append(t - start)
                    beat_lev.append(0 if b == 0 else 1)
    cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dtype=dt)  # noqa: E731
    b = np.asarray(beats, dtype=float)
    bl = np.asarray(beat_lev, dtype=int)
    order = np.argsort(b, kind="stable")
    return (
        cat(ons, float),
        cat(durs, float),
        cat(pits, int),
        cat(parts, int),
        cat(lev, int),
        b[order],
        bl[order],
    )


def _fold(p: np.ndarray, lo: int = 24, hi: int = 103) -> np.ndarray:
    p = p.copy()
    while np.any(p < lo):
        p[p < lo] += 12
    while np.any(p > hi):
        p[p > hi] -= 12
    return p


def _bar_structure(beats: np.ndarray, beat_lev: np.ndarray, beat_ql: float):
    """Bars as (start, n_beats) from the beat grid."""
    starts = np.flatnonzero(beat_lev == 0)
    bars = []
    for j, s in enumerate(starts):
        e = starts[j + 1] if j + 1 < len(starts) else len(beats)
        bars.append((float(beats[s]), int(e - s)))
    if len(beats) and (not len(starts) or starts[0] > 0):  # leading partial bar
        first = starts[0] if len(starts) else len(beats)
        bars.insert(0, (float(beats[0]), int(first)))
    return bars


def realize(piece: Piece, f: Factors, seconds: float, key) -> Clip:
    """Apply the factors to the piece: the timed note events of one clip."""
    key = tuple(int(k) for k in key)
    beat_ql = float(piece.measure_beat[int(np.searchsorted(piece.measure_offsets, f.excerpt_start_ql, side="right")) - 1])
    span = _window_quarters(piece, f.excerpt_start_ql, f.tempo_bpm, f.rubato, seconds)
    on, du, pi, pa, lev, beats, beat_lev = _excerpt(piece, f.excerpt_start_ql, span)

    # 2. texture
    n_src = len(piece.parts)
    if f.texture == "outer" and n_src >= 3:
        keep_parts = [0, n_src - 1]
    elif f.texture == "melody" and n_src >= 2:
        keep_parts = [0]
    else:
        keep_parts = list(range(n_src))
    sel = np.isin(pa, keep_parts)
    remap = {p: i for i, p in enumerate(keep_parts)}
    on, du, pi, lev = on[sel], du[sel], pi[sel], lev[sel]
    pa = np.array([remap[int(p)] for p in pa[sel]], dtype=int)
    n_parts = len(keep_parts)
    texture = f.texture
    nominal_clip_ql = seconds * f.tempo_bpm / 60.0 * beat_ql
    if np.sum(on < 0.8 * nominal_clip_ql) < 6 and texture != "full":  # the kept parts rest here: keep every part
        on, du, pi, pa, lev, beats, beat_lev = _excerpt(piece, f.excerpt_start_ql, span)
        n_parts, texture = n_src, "full"

    # 3. key finding + mode change
    tonic, mode_found, _ = best_key(pc_profile(pi, du))
    rel = (pi - tonic) % 12
    mode_after = mode_found
    if f.mode == "minor" and mode_found == "major":
        pi = pi - np.isin(rel, (4, 9)).astype(int)
        mode_after = "minor"
    elif f.mode == "major" and mode_found == "minor":
        pi = pi + np.isin(rel, (3, 8, 10)).astype(int)
        mode_after = "major"

    # 4. tonal blur: modulations, then wrong notes
    r = _substream(key, 4)
    cuts = np.sort(r.uniform(0.3, 0.7, size=2)) if len(f.modulation_shifts) == 2 else r.uniform(0.35, 0.65, size=2)[:1]
    clip_ql = seconds * f.tempo_bpm / 60.0 * beat_ql
    shift = np.zeros(len(pi), dtype=int)
    total = 0
    for c, s in zip(cuts, f.modulation_shifts):
        total += s if s <= 6 else s - 12
        shift[on >= c * clip_ql] = total
    pi = pi + shift
    u = r.random(len(pi))
    sign = np.where(r.random(len(pi)) < 0.5, -1, 1)
    wrong = u < f.wrong_notes
    pi = pi + np.where(wrong, sign, 0)

    # 5. melody octave displacement
    r = _substream(key, 5)
    u = r.random(len(pi))
    up = r.random(len(pi)) < 0.5
    disp = (pa == 0) & (u < f.octave_displacement)
    delta = np.where(up, 12, -12)
    cand = pi + delta
    delta = np.where((cand < 40) | (cand > 96), -delta, delta)
    pi = pi + np.where(disp, delta, 0)

    kind = np.full(len(pi), KIND_SCORE, dtype=int)
    cents = np.zeros(len(pi))

    # 6. dissonance injection: clusters and tritones below the melody, detuned melody double
    r = _substream(key, 6)
    uniq = np.unique(on)
    add_on, add_du, add_pi, add_lev, add_ref = [], [], [], [], []
    u1 = r.random(len(uniq))
    u2 = r.random(len(uniq))
    u3 = r.random(len(uniq))
    u4 = r.random(len(uniq))
    u5 = r.random(len(uniq))
    for j, t in enumerate(uniq):
        at = np.flatnonzero(np.abs(on - t) < 1e-9)
        top = int(pi[at].max())
        if u1[j] < 0.7 * f.cluster_rate:  # cluster: a second next to a chord tone
            ref = at[int(u2[j] * len(at)) % len(at)]
            step = 1 if u3[j] < 0.6 else 2
            cand = int(pi[ref]) + (step if u4[j] < 0.5 else -step)
            if cand >= top:
                cand = int(pi[ref]) - step
            if cand >= top:
                cand = top - step
            add_on.append(t), add_du.append(du[ref]), add_pi.append(cand), add_lev.append(lev[ref]), add_ref.append(ref)
        if u5[j] < 0.35 * f.cluster_rate:  # tritone below the top note
            ref = at[int(np.argmax(pi[at]))]
            add_on.append(t), add_du.append(du[ref]), add_pi.append(top - 6), add_lev.append(lev[ref]), add_ref.append(ref)
    n_inj = len(add_on)
    add_ref = np.asarray(add_ref, dtype=int)
    if n_inj:
        on = np.concatenate([on, add_on])
        du = np.concatenate([du, add_du])
        pi = np.concatenate([pi, np.asarray(add_pi, dtype=int)])
        lev = np.concatenate([lev, np.asarray(add_lev, dtype=int)])
        pa = np.concatenate([pa, np.full(n_inj, n_parts, dtype=int)])
        kind = np.concatenate([kind, np.full(n_inj, KIND_INJECTED)])
        cents = np.concatenate([cents, np.zeros(n_inj)])
    det_src = np.zeros(0, dtype=int)
    if f.detune_cents > 0:
        mel = np.flatnonzero((pa == 0) & (kind == KIND_SCORE))
        det_src = mel
        on = np.concatenate([on, on[mel]])
        du = np.concatenate([du, du[mel]])
        pi = np.concatenate([pi, pi[mel]])
        lev = np.concatenate([lev, lev[mel]])
        pa = np.concatenate([pa, np.full(len(mel), n_parts + 1, dtype=int)])
        kind = np.concatenate([kind, np.full(len(mel), KIND_DETUNED)])
        cents = np.concatenate([cents, np.full(len(mel), float(f.detune_cents))])

    # 7. register
    pi = _fold(pi + int(f.transpose))

    # 8. performance: tempo map with rubato, jitter, articulation, dynamics, programs
    # drums first (score time), so they share the tempo map and jitter
    d_on, d_pi, d_lev, d_vel_off = _drums(f, beats, beat_lev, beat_ql, _substream(key, 9))
    n_pitched = len(on)
    if len(d_on):
        on = np.concatenate([on, d_on])
        du = np.concatenate([du, np.full(len(d_on), beat_ql / 4)])
        pi = np.concatenate([pi, d_pi])
        lev = np.concatenate([lev, d_lev])
        pa = np.concatenate([pa, np.full(len(d_on), -1, dtype=int)])
        kind = np.concatenate([kind, np.full(len(d_on), KIND_DRUM)])
        cents = np.concatenate([cents, np.zeros(len(d_on))])

    bpm = f.tempo_bpm
    grid = np.arange(0.0, span / beat_ql + 2.0, 0.01)  # beats
    mult = 1.0 + f.rubato * np.sin(2 * np.pi * grid / f.rubato_period + f.rubato_phase)
    sec = np.concatenate([[0.0], np.cumsum(0.5 * (1 / mult[1:] + 1 / mult[:-1]) * np.diff(grid))]) * 60.0 / bpm
    tmap = lambda q: np.interp(q / beat_ql, grid, sec)  # noqa: E731
    beat_s = 60.0 / bpm
    r = _substream(key, 8)
    # one deviation per score onset (the ensemble moves together), plus a small per-note spread
    uq, inv = np.unique(np.round(on, 6), return_inverse=True)
    common = r.standard_normal(len(uq))
    spread = r.standard_normal(len(on))
    art_noise = r.standard_normal(len(on))
    vel_noise = r.standard_normal(len(on))
    dev = (common[inv] + 0.25 * spread) * f.jitter * beat_s
    dev = np.clip(dev, -0.45 * beat_s, 0.45 * beat_s)
    t_on = tmap(on) + dev
    t_on = np.maximum(t_on, 0.0)
    notated = np.maximum(tmap(on + du) - tmap(on), 1e-3)
    ratio = f.articulation_ratio * np.exp(0.08 * art_noise)
    sounding = np.maximum(0.03, ratio * notated)
    sounding[kind == KIND_DRUM] = 0.1
    vel = f.velocity + f.velocity_spread * vel_noise + np.where(lev == 0, 4.0, 0.0) * (f.velocity_spread > 0)
    vel = vel + np.where((pa == 0) & (kind != KIND_DRUM), f.melody_boost, 0.0)
    if n_inj:
        vel[pa == n_parts] = vel[add_ref]  # injected notes as loud as the note they lean on
    if len(det_src):
        vel[pa == n_parts + 1] = vel[det_src] - 6.0  # the detuned double a little softer than the melody
    vel[kind == KIND_DRUM] += d_vel_off
    vel = np.clip(np.round(vel), 8, 127).astype(int)
    progs = list(f.programs)
    if n_parts <= len(progs):
        part_prog = progs[: n_parts - 1] + [progs[-1]] if n_parts > 1 else progs[:1]
    else:
        part_prog = (progs * 2)[:n_parts]
    inj_prog = part_prog[1] if n_parts > 1 else part_prog[0]
    prog = np.array(
        [
            -1 if k == KIND_DRUM else (part_prog[p] if k == KIND_SCORE else (inj_prog if k == KIND_INJECTED else part_prog[0]))
            for p, k in zip(pa, kind)
        ],
        dtype=int,
    )

    # 10. cut to the clip
    keep = t_on < seconds - 0.02
    order = np.lexsort((pi[keep], t_on[keep]))
    idx = np.flatnonzero(keep)[order]
    clip_ql_beats = beats[beats < clip_ql]
    clip_ql_levels = beat_lev[beats < clip_ql]
    return Clip(
        seconds=float(seconds),
        onset=t_on[idx],
        end=(t_on + sounding)[idx],
        notated=notated[idx],
        pitch=pi[idx].astype(int),
        velocity=vel[idx],
        part=pa[idx],
        kind=kind[idx],
        program=prog[idx],
        cents=cents[idx],
        onset_ql=on[idx],
        dur_ql=du[idx],
        level=lev[idx],
        beat_ql=beat_ql,
        beats=clip_ql_beats,
        beat_levels=clip_ql_levels,
        tempo_bpm=float(bpm),
        tonic=int(tonic),
        mode_found=mode_found,
        mode_after=mode_after,
        n_parts=n_parts,
        info={"n_injected": int(n_inj), "n_pitched": int(n_pitched), "clip_ql": float(clip_ql), "texture": texture},
    )


def _drums(f: Factors, beats: np.ndarray, beat_lev: np.ndarray, beat_ql: float, r: np.random.Generator):
    """Kick / snare / hi-hat on the bar grid; syncopation moves hits off the beat."""
    if not f.percussion or len(beats) == 0:
        return np.zeros(0), np.zeros(0, dtype=int), np.zeros(0, dtype=int), np.zeros(0)
    compound = np.isclose(beat_ql % 1.5, 0.0) and not np.isclose(beat_ql % 2.0, 0.0)
    steps = (3 if f.perc_subdivision == 2 else 6) if compound else f.perc_subdivision
    step_ql = beat_ql / steps
    on, pit, lev, voff = [], [], [], []
    bars = _bar_structure(beats, beat_lev, beat_ql)
    draws = r.random((len(bars), 64, 4))
    for bi, (b0, nb) in enumerate(bars):
        d = draws[bi]
        for b in range(nb):
            q = b0 + b * beat_ql
            is_kick = b % 2 == 0 or nb == 3 and b == 0
            drum = GM_KICK if is_kick else GM_SNARE
            # syncopation: move this beat's kick/snare one step early/late (never the downbeat)
            off = 0
            if b > 0 and d[b, 0] < f.perc_syncopation:
                off = -1 if d[b, 1] < 0.5 else 1
            level = (0 if b == 0 else 1) if off == 0 else 3
            on.append(q + off * step_ql), pit.append(drum), lev.append(level), voff.append(0.0)
            # extra off-beat kick ("and" of the beat)
            if d[b, 2] < 0.5 * f.perc_syncopation:
                on.append(q + (steps // 2) * step_ql + (step_ql if steps >= 4 else 0)), pit.append(GM_KICK), lev.append(3), voff.append(-8.0)
            # hats on every step
            for s in range(steps):
                on.append(q + s * step_ql), pit.append(GM_HAT), lev.append(1 if s == 0 else 2 + (s % 2)), voff.append(-18.0)
    on_a = np.asarray(on, dtype=float)
    ok = on_a >= 0
    levels = np.asarray(lev, dtype=int)[ok]
    return on_a[ok], np.asarray(pit, dtype=int)[ok], levels, np.asarray(voff)[ok]


NEUTRAL = {
    "tempo_bpm": 90.0,
    "articulation_ratio": 0.95,
    "jitter": 0.0,
    "rubato": 0.0,
    "rubato_period": 8.0,
    "rubato_phase": 0.0,
    "velocity": 80.0,
    "velocity_spread": 0.0,
    "melody_boost": 8.0,
    "ensemble": "strings",
    "programs": ENSEMBLES["strings"][1],
    "texture": "full",
    "transpose": 0,
    "mode": "keep",
    "wrong_notes": 0.0,
    "modulation_shifts": (),
    "cluster_rate": 0.0,
    "detune_cents": 0.0,
    "octave_displacement": 0.0,
    "percussion": False,
    "perc_syncopation": 0.0,
    "perc_subdivision": 2,
}
"""A plain performance: moderate tempo, legato, steady, no transformations. Paired checks start
from here and change one factor."""


def neutral_factors(piece: Piece, excerpt_start_ql: float = 0.0, **overrides) -> Factors:
    """Factors of a plain performance of ``piece`` from ``excerpt_start_ql``, with ``overrides``."""
    d = {**NEUTRAL, "piece_id": piece.ref.piece_id, "excerpt_start_ql": float(excerpt_start_ql)}
    if "ensemble" in overrides and "programs" not in overrides and overrides["ensemble"] in ENSEMBLES:
        d["programs"] = ENSEMBLES[overrides["ensemble"]][1]
    d.update(overrides)
    d["programs"] = tuple(int(p) for p in d["programs"])
    d["modulation_shifts"] = tuple(int(s) for s in d["modulation_shifts"])
    return Factors(**d)
