"""A phonocardiogram (PCG) simulator whose every sound has a known cause, time and size.

One recording is drawn in three steps, each from its own stream of random numbers, so that a component can
be left out without moving anything else (``render_pcg(..., omit={"systolic_murmur"})`` is the same
recording without its murmur, sample for sample):

1. ``draw_patient``: the physiology (heart rate, variability, rhythm, the heart sounds' sizes and
   frequencies, the S2 split, S3/S4, murmurs, the respiration);
2. ``draw_beats``: the beat-by-beat schedule (one row per cardiac cycle: when S1, A2, P2, S3 and S4 start,
   which beats are ectopic, the respiration phase), with the segmentation states S1 / systole / S2 /
   diastole;
3. ``render_pcg``: the sound, at 2000 Hz (the Challenge 2016 rate).

The physiology, with its sources (docs/heart_sound_corpus.md has the details):

- **S1** (closure of the atrioventricular valves): a mitral component M1, then a tricuspid T1 15-30 ms
  later and 0.5-0.85 as loud (the normal S1 split is 10-30 ms). **S2**: the aortic A2, then the pulmonic
  P2 0.4-0.7 as loud (0.5-0.8 at the pulmonic site), ``s2_split_ms`` later at
  end-expiration, widening by ``s2_split_inspiration_ms`` at full inspiration (the physiological split:
  inspiration delays pulmonic closure). Each component is a damped transient: a sum of three partials
  (f0, 2.1 f0, 3.3 f0 at 1, 0.5, 0.2) with a slightly falling pitch under a gamma envelope
  ``(t/tau) exp(1 - t/tau)`` (peak 1 at ``tau``, cut with a cosine fade at ``6 tau``). S1: f0 35-60 Hz,
  tau 10-15 ms (its energy at ~30-150 Hz, 70-130 ms long); S2: f0 50-80 Hz, tau 7-11 ms (higher pitched,
  shorter), as in the heart-sound literature (S1 ~ 100-150 ms, S2 ~ 80-120 ms; the segmentation of
  Springer et al. 2016 takes Schmidt et al.'s 2010 means, S1 122 ms and S2 92 ms).
- **Timing.** The interval from the start of S1 to the start of A2 follows Weissler's regression of the
  left-ventricular ejection time on heart rate (Weissler, Harris & Schoenfeld 1968, men):
  ``LVET = 413 - 1.7 HR`` ms, with HR the instantaneous rate of the interval *before* the beat (a
  premature beat, filled less, ejects for shorter). It leaves out the isovolumic contraction (~30-50 ms),
  which puts systole at 0.34 of the cycle at 70 bpm and 0.42 at 120 bpm, and agrees within 13 ms with a
  Bazett-like ``0.305 sqrt(RR)`` s over 50-120 bpm.
- **S3** (rapid ventricular filling): ``s3`` times S1's size, 120-180 ms after A2, f0 25-45 Hz, tau 8-12 ms.
  **S4** (atrial contraction against a stiff ventricle): 80-110 ms before S1, f0 20-40 Hz, tau 8-12 ms;
  never with atrial fibrillation (no atrial contraction) and not before an ectopic beat.
- **Murmurs**: band-passed Gaussian noise (Butterworth, zero phase) under an envelope, its RMS at the
  envelope's top equal to ``systolic_murmur`` (or ``diastolic_murmur``) times S1's peak. Systolic:
  ``holosystolic`` (mitral/tricuspid regurgitation, a plateau from S1's start to A2, 150-500 Hz) or
  ``diamond`` (ejection murmurs, crescendo-decrescendo from S1's end to A2's start, peak at 41-60% of it,
  100-400 Hz). Diastolic: a decrescendo from A2 over 60-100% of the diastole (aortic regurgitation,
  150-500 Hz). Grades: ``murmur_grade``; each grade doubles the amplitude (grade 1 = 0.06 S1), a
  convention of this corpus in the spirit of Levine's six grades, which are judged by ear.
- **Rhythm**: RR intervals from a seeded process: the mean ``60 / heart_rate_bpm`` plus ``hrv_sdnn_ms``
  times (respiratory sinus arrhythmia, a cosine at the respiration rate, shorter in inspiration, sharing
  ``rsa_share`` of the variance, plus an AR(1) process, phi 0.6, for the rest). ``ectopic``: premature
  beats at 55-75% of the interval with a full compensatory pause (the next sinus beat on time, two
  intervals after the last), their S1 0.6-1.6 and S2 half as loud; ``irregular`` (atrial-fibrillation
  like): independent log-normal intervals, CV ``rr_cv``, S1 size varying 0.7-1.3 beat to beat.
- **Respiration**: 0.2-0.3 Hz (12-18 breaths a minute); its phase sets each beat's S2 split, its RSA,
  and the breathing noise of the recording conditions.

Intensities: ``s1_intensity_db`` is M1's peak in dB re. full scale of this dry render (before the
recording conditions' gain); ``s2_intensity_db`` is A2's; every other size is relative to S1's peak.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

SAMPLE_RATE = 2000
RR_RANGE = (0.33, 2.0)  # s; 30-180 bpm
AR_PHI = 0.6
GRADE1_RATIO = 0.06  # a grade-1 murmur's RMS re. S1's peak; every grade doubles it
ENVELOPE_SPAN = 6.0  # a transient lasts 6 tau
PARTIALS = ((1.0, 1.0), (2.1, 0.5), (3.3, 0.2))
#: rendered parts, in rendering order; each has its own random stream ([*key, 10 + position])
COMPONENTS = ("s1", "s2", "s3", "s4", "systolic_murmur", "diastolic_murmur")
#: the pathologies a patient can be drawn with (``draw_patient``), and how often each is the main one
PATHOLOGIES = {"systolic_murmur": 0.22, "holosystolic_murmur": 0.12, "diastolic_murmur": 0.1, "s3": 0.1,
               "s4": 0.1, "bradycardia": 0.06, "tachycardia": 0.08, "atrial_fibrillation": 0.08,
               "ectopy": 0.07, "wide_split": 0.07}
SITES = ("aortic", "pulmonic", "tricuspid", "mitral")


def lvet_s(heart_rate_bpm):
    """Weissler et al. (1968), men: left-ventricular ejection time in s = (413 - 1.7 HR) / 1000."""
    return (413.0 - 1.7 * np.asarray(heart_rate_bpm, dtype=np.float64)) / 1000.0


def murmur_grade(ratio: float) -> int:
    """The corpus's grade (0 none, 1-6) of a murmur whose RMS is ``ratio`` times S1's peak."""
    if ratio <= 0:
        return 0
    return int(np.clip(round(math.log2(ratio / GRADE1_RATIO)) + 1, 1, 6))


def grade_ratio(grade: int, u: float) -> float:
    """A murmur size of ``grade`` from a uniform draw ``u`` in [0, 1): within the grade, +-3 dB about its centre."""
    return float(GRADE1_RATIO * 2.0 ** (grade - 1 + 0.98 * (u - 0.5)))


@dataclass(frozen=True)
class Patient:
    """One recording's physiology (``draw_patient``). Times in ms or s as named, sizes as documented above."""

    age_group: str  # "child" (physiological S3 possible) or "adult"
    site: str  # auscultation site: S1 louder at tricuspid/mitral, S2 at aortic/pulmonic
    heart_rate_bpm: float  # the target mean rate (the recording's own is ``concept_values``)
    hrv_sdnn_ms: float  # the target SD of sinus intervals
    rsa_share: float  # share of that variance at the respiration rate
    resp_rate_hz: float
    resp_phase: float  # rad at t = 0
    rhythm: str  # "regular", "ectopic", "irregular"
    ectopic_rate: float  # chance a sinus beat is followed by a premature one ("ectopic")
    rr_cv: float  # coefficient of variation of the intervals ("irregular")
    s1_intensity_db: float
    s1_freq_hz: float
    m1_tau_ms: float
    t1_ratio: float
    t1_delay_ms: float
    s2_intensity_db: float
    s2_freq_hz: float
    a2_tau_ms: float
    p2_ratio: float
    s2_split_ms: float  # end-expiration
    s2_split_inspiration_ms: float  # added at full inspiration
    s3: float = 0.0  # size re. S1 (0: none)
    s3_freq_hz: float = 35.0
    s4: float = 0.0
    s4_freq_hz: float = 30.0
    systolic_murmur: float = 0.0  # RMS re. S1's peak (0: none)
    systolic_murmur_shape: str = "none"  # "none", "diamond", "holosystolic"
    systolic_band_hz: tuple[float, float] = (100.0, 400.0)
    diastolic_murmur: float = 0.0
    diastolic_band_hz: tuple[float, float] = (150.0, 500.0)
    diastolic_extent: float = 0.8  # share of the diastole the decrescendo lasts
    pathologies: tuple[str, ...] = field(default=())  # what was drawn (the label follows the rules, not this)

    def without(self, *components: str) -> "Patient":
        """The same patient without some optional sounds (``s3``, ``s4``, ``systolic_murmur``,
        ``diastolic_murmur``); rendering it with the same beats and key changes nothing else."""
        changes = {c: 0.0 for c in components}
        if "systolic_murmur" in components:
            changes["systolic_murmur_shape"] = "none"
        return replace(self, **changes)


def draw_patient(rng: np.random.Generator, prevalence: float) -> Patient:
    """A patient: with chance ``prevalence`` one pathology of ``PATHOLOGIES`` (a second one in a quarter of
    those), else a healthy heart, which may have an innocent murmur (grade 1-2 ejection, 15%), a
    physiological S3 (children, 40%) or occasional ectopic beats (10%). Every draw is made whatever is
    chosen, so the stream stays aligned."""
    names = list(PATHOLOGIES)
    weights = np.array([PATHOLOGIES[n] for n in names])
    sick = rng.random() < prevalence
    first = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    second = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    drawn = tuple(dict.fromkeys([first, second] if rng.random() < 0.25 else [first])) if sick else ()
    child = rng.random() < 0.3 and not {"s3", "s4"} & set(drawn)
    u = rng.uniform(size=40)  # the rest of the draws, in a fixed order
    hr = 70 + 35 * u[0] if child else 55 + 45 * u[0]
    site = SITES[int(u[1] * len(SITES))]
    basal = site in ("aortic", "pulmonic")
    values = dict(
        age_group="child" if child else "adult", site=site, heart_rate_bpm=hr,
        hrv_sdnn_ms=10 + 40 * u[2] + (10 if child else 0), rsa_share=0.3 + 0.4 * u[3],
        resp_rate_hz=0.2 + 0.1 * u[4], resp_phase=2 * math.pi * u[5],
        rhythm="ectopic" if u[6] < 0.1 else "regular", ectopic_rate=0.02 + 0.03 * u[7], rr_cv=0.0,
        s1_intensity_db=-16 + 6 * u[8], s1_freq_hz=35 + 25 * u[9], m1_tau_ms=10 + 5 * u[10],
        t1_ratio=0.5 + 0.35 * u[11], t1_delay_ms=15 + 15 * u[12],
        s2_freq_hz=50 + 30 * u[14], a2_tau_ms=7 + 4 * u[15],
        p2_ratio=(0.5 if site == "pulmonic" else 0.4) + 0.3 * u[16],
        s2_split_ms=5 + 25 * u[17], s2_split_inspiration_ms=10 + 30 * u[18],
        s3_freq_hz=25 + 20 * u[20], s4_freq_hz=20 + 20 * u[21],
    )
    values["s2_intensity_db"] = values["s1_intensity_db"] + (6 * u[13] if basal else -6 * u[13])
    if child and u[19] < 0.4:
        values["s3"] = 0.15 + 0.25 * u[22]
    if u[23] < 0.15:  # an innocent (flow) murmur: soft, midsystolic
        values.update(systolic_murmur=grade_ratio(1 + int(u[24] < 0.5), u[39]), systolic_murmur_shape="diamond",
                      systolic_band_hz=(80 + 60 * u[25], 250 + 150 * u[26]))
    grade = 3 + int(u[27] < 0.4)
    for name in drawn:
        if name == "systolic_murmur":  # aortic-stenosis like: loud, harsh, ejection
            values.update(systolic_murmur=grade_ratio(grade, u[39]), systolic_murmur_shape="diamond",
                          systolic_band_hz=(100 + 50 * u[25], 300 + 100 * u[26]))
        elif name == "holosystolic_murmur":  # mitral-regurgitation like: blowing plateau, any grade
            values.update(systolic_murmur=grade_ratio(2 + int(3 * u[28]), u[39]), systolic_murmur_shape="holosystolic",
                          systolic_band_hz=(150 + 50 * u[25], 400 + 100 * u[26]))
        elif name == "diastolic_murmur":  # aortic-regurgitation like
            values.update(diastolic_murmur=grade_ratio(1 + int(3 * u[29]), u[24]),
                          diastolic_band_hz=(150 + 50 * u[30], 400 + 100 * u[31]), diastolic_extent=0.6 + 0.4 * u[32])
        elif name == "s3":
            values["s3"] = 0.2 + 0.3 * u[22]
        elif name == "s4":
            values["s4"] = 0.2 + 0.3 * u[33]
        elif name == "bradycardia":
            values["heart_rate_bpm"] = 38 + 10 * u[34]
        elif name == "tachycardia":
            values["heart_rate_bpm"] = 115 + 35 * u[34]
        elif name == "atrial_fibrillation":
            values.update(rhythm="irregular", rr_cv=0.15 + 0.15 * u[35], heart_rate_bpm=60 + 60 * u[34], s4=0.0)
        elif name == "ectopy":
            values.update(rhythm="ectopic", ectopic_rate=0.15 + 0.15 * u[36])
        elif name == "wide_split":  # atrial-septal-defect like: wide and fixed
            values.update(s2_split_ms=40 + 30 * u[37], s2_split_inspiration_ms=8 * u[38])
    if values["rhythm"] == "irregular":
        values["s4"] = 0.0
    return Patient(**values, pathologies=drawn)


def respiration(p: Patient, t) -> np.ndarray:
    """Lung volume 0 (end-expiration) ... 1 (full inspiration) at times ``t`` (s)."""
    return 0.5 * (1 - np.cos(2 * math.pi * p.resp_rate_hz * np.asarray(t, dtype=np.float64) + p.resp_phase))


def draw_beats(p: Patient, seconds: float, rng: np.random.Generator) -> pd.DataFrame:
    """One row per cardiac cycle covering ``[0, seconds)`` (the first starts 1-2 cycles before 0, so a
    recording starts mid-cycle): times in s of each sound's start, the segmentation states, the per-beat
    sizes. ``s3_onset``/``s4_onset`` (NaN where none) lie in the row's diastole (S4: before the *next* S1)."""
    rr_mean = 60.0 / p.heart_rate_bpm
    sdnn = p.hrv_sdnn_ms / 1000.0
    a = math.sqrt(p.rsa_share)
    t = -rr_mean * (1 + rng.random())
    onsets, ectopic = [], []
    z = rng.standard_normal()
    while t < seconds + 0.05:
        z = AR_PHI * z + math.sqrt(1 - AR_PHI ** 2) * rng.standard_normal()
        af, u, coupling = rng.standard_normal(), rng.random(), rng.uniform(0.55, 0.75)
        if p.rhythm == "irregular":
            rr = rr_mean * math.exp(p.rr_cv * af - p.rr_cv ** 2 / 2)
        else:
            theta = 2 * math.pi * p.resp_rate_hz * t + p.resp_phase
            rr = rr_mean + sdnn * (a * math.sqrt(2) * math.cos(theta) + math.sqrt(1 - a * a) * z)
        rr = float(np.clip(rr, *RR_RANGE))
        onsets.append(t)
        ectopic.append(False)
        if p.rhythm == "ectopic" and u < p.ectopic_rate:
            onsets.append(t + coupling * rr)
            ectopic.append(True)
            t += 2 * rr  # full compensatory pause
        else:
            t += rr
    onsets.append(t)  # the next cycle's S1 closes the last row's diastole
    onset = np.array(onsets)
    n = len(onset) - 1
    rr_next = np.diff(onset)
    rr_prev = np.concatenate([[rr_mean], rr_next[:-1]])
    ect = np.array(ectopic[:n])
    jitter = rng.uniform(size=(8, n))
    m1_tau = p.m1_tau_ms / 1000 * (0.95 + 0.1 * jitter[0])
    t1_delay = p.t1_delay_ms / 1000 * (0.9 + 0.2 * jitter[1])
    t1_tau = m1_tau * (0.9 + 0.2 * jitter[2])
    s1_end = onset[:n] + np.maximum(ENVELOPE_SPAN * m1_tau, t1_delay + ENVELOPE_SPAN * t1_tau)
    s1_gain = np.ones(n)
    if p.rhythm == "irregular":
        s1_gain = 0.7 + 0.6 * jitter[3]
    s1_gain = np.where(ect, 0.6 + 1.0 * jitter[3], s1_gain)
    s2_gain = np.where(ect, 0.5, 1.0)
    systole = lvet_s(60.0 / rr_prev) + 0.005 * (jitter[4] - 0.5) * 2
    a2_tau = p.a2_tau_ms / 1000 * (0.95 + 0.1 * jitter[5])
    p2_tau = a2_tau * 1.1
    resp = respiration(p, onset[:n])
    split = (p.s2_split_ms + p.s2_split_inspiration_ms * resp) / 1000
    s2_len = np.maximum(ENVELOPE_SPAN * a2_tau, split + ENVELOPE_SPAN * p2_tau)
    systole = np.clip(systole, s1_end - onset[:n] + 0.03, None)
    systole = np.minimum(systole, np.maximum(rr_next - s2_len - 0.05, s1_end - onset[:n] + 0.02))
    a2 = onset[:n] + systole
    s2_end = a2 + s2_len
    s3 = a2 + 0.12 + 0.06 * jitter[6] if p.s3 > 0 else np.full(n, np.nan)
    s3 = np.where(s3 + 0.03 < onset[1:], s3, np.nan)
    s4_ok = (p.s4 > 0) & ~np.concatenate([ect[1:], [False]])
    s4 = np.where(s4_ok, onset[1:] - 0.08 - 0.03 * jitter[7], np.nan)
    s4 = np.where(s4 > s2_end + 0.02, s4, np.nan)
    return pd.DataFrame({
        "s1_start": onset[:n], "s1_end": s1_end, "s2_start": a2, "s2_end": s2_end, "diastole_end": onset[1:],
        "rr_prev": rr_prev, "rr_next": rr_next, "ectopic": ect, "respiration": resp,
        "m1_tau": m1_tau, "t1_delay": t1_delay, "t1_tau": t1_tau, "s1_gain": s1_gain,
        "a2_onset": a2, "p2_onset": a2 + split, "a2_tau": a2_tau, "p2_tau": p2_tau, "s2_gain": s2_gain,
        "s3_onset": s3, "s4_onset": s4,
    })


def in_recording(beats: pd.DataFrame, seconds: float) -> pd.DataFrame:
    """The beats whose S1 starts inside ``[0, seconds)`` (their later states may run past the end)."""
    keep = (beats["s1_start"] >= 0) & (beats["s1_start"] < seconds)
    return beats[keep].reset_index(drop=True)


def segments(beats: pd.DataFrame, seconds: float) -> pd.DataFrame:
    """The per-beat segmentation written beside each recording: S1 ``[s1_start, s1_end)``, systole
    ``[s1_end, s2_start)``, S2 ``[s2_start, s2_end)``, diastole ``[s2_end, diastole_end)``, plus where A2, P2,
    S3 and S4 start and whether the beat is ectopic."""
    seen = in_recording(beats, seconds)
    out = seen[["s1_start", "s1_end", "s2_start", "s2_end", "diastole_end", "a2_onset", "p2_onset", "s3_onset",
                "s4_onset"]].copy()
    out.insert(0, "beat", np.arange(len(out)))
    out["ectopic"] = seen["ectopic"].astype(int)
    return out


def concept_values(p: Patient, beats: pd.DataFrame, seconds: float) -> dict[str, float | int | str]:
    """The recording's physiological concepts (the recording conditions add ``noise_level``).

    ``heart_rate_bpm``: 60 over the mean interval between consecutive S1 onsets inside the recording;
    ``hrv_sdnn_ms``: the SD (ddof 0) of those intervals that join two sinus beats (of all of them with an
    irregular rhythm); ``ectopic_fraction``: the share of the recording's beats that are ectopic."""
    seen = in_recording(beats, seconds)
    start = seen["s1_start"].to_numpy()
    rr = np.diff(start)
    ect = seen["ectopic"].to_numpy()
    sinus = ~(ect[:-1] | ect[1:]) if p.rhythm != "irregular" else np.ones(len(rr), bool)
    nn = rr[sinus] if sinus.any() else rr
    systolic = ((seen["s2_start"] - seen["s1_start"]) / seen["rr_next"]).to_numpy()
    sinus_beats = ~ect
    split = seen["p2_onset"] - seen["a2_onset"]
    return {
        "heart_rate_bpm": float(60.0 / rr.mean()),
        "hrv_sdnn_ms": float(1000 * nn.std()),
        "s1_intensity_db": p.s1_intensity_db,
        "s2_intensity_db": p.s2_intensity_db,
        "s2_split_ms": p.s2_split_ms,
        "systolic_murmur": p.systolic_murmur,
        "diastolic_murmur": p.diastolic_murmur,
        "s3": p.s3,
        "s4": p.s4,
        "systolic_murmur_grade": murmur_grade(p.systolic_murmur),
        "systolic_murmur_shape": p.systolic_murmur_shape,
        "diastolic_murmur_grade": murmur_grade(p.diastolic_murmur),
        "irregular_rhythm": int(p.rhythm == "irregular"),
        "ectopic_fraction": float(ect.mean()),
        "s2_split_inspiration_ms": p.s2_split_inspiration_ms,
        "s2_split_mean_ms": float(1000 * split.mean()),
        "systolic_fraction": float(systolic[sinus_beats].mean() if sinus_beats.any() else systolic.mean()),
        "age_group": p.age_group,
        "beats": int(len(seen)),
    }


# ---- rendering --------------------------------------------------------------------------------------


def transient(f0: float, tau: float, rng: np.random.Generator, glide: float = 0.15) -> np.ndarray:
    """A damped valve sound of peak 1: ``PARTIALS`` of ``f0`` whose pitch falls by ``glide`` over the sound,
    under the gamma envelope ``(t/tau) exp(1 - t/tau)``, faded out over its last tau (``ENVELOPE_SPAN`` tau)."""
    n = max(int(round(ENVELOPE_SPAN * tau * SAMPLE_RATE)), 4)
    t = np.arange(n) / SAMPLE_RATE
    env = (t / tau) * np.exp(1 - t / tau)
    fade = min(int(round(tau * SAMPLE_RATE)), n // 2)
    env[n - fade:] *= 0.5 * (1 + np.cos(np.linspace(0, math.pi, fade)))
    phase0 = rng.uniform(0, 2 * math.pi, size=len(PARTIALS))
    # instantaneous frequency f0 (1 + glide exp(-t / (2 tau)))
    base = 2 * math.pi * f0 * (t + glide * 2 * tau * (1 - np.exp(-t / (2 * tau))))
    wave = sum(a * np.sin(k * base + ph) for (k, a), ph in zip(PARTIALS, phase0))
    out = env * wave
    return out / max(float(np.abs(out).max()), 1e-12)


def _add(out: np.ndarray, start_s: float, wave: np.ndarray) -> None:
    start = int(round(start_s * SAMPLE_RATE))
    lo, hi = max(start, 0), min(start + len(wave), len(out))
    if hi > lo:
        out[lo:hi] += wave[lo - start:hi - start]


def band_noise(n: int, band_hz: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS Gaussian noise through a 4th-order Butterworth band-pass, zero phase."""
    from scipy.signal import butter, sosfiltfilt

    pad = SAMPLE_RATE // 2
    sos = butter(4, [band_hz[0], min(band_hz[1], 0.45 * SAMPLE_RATE)], btype="bandpass", fs=SAMPLE_RATE, output="sos")
    x = sosfiltfilt(sos, rng.standard_normal(n + 2 * pad))[pad:pad + n]
    return x / max(float(np.sqrt(np.mean(x ** 2))), 1e-12)


def _ramp(t: np.ndarray, start: float, end: float, ramp: float = 0.01) -> np.ndarray:
    """1 inside [start, end], with linear ramps of ``ramp`` s inside the edges; 0 outside."""
    if end <= start:
        return np.zeros_like(t)
    r = min(ramp, (end - start) / 2)
    return np.clip(np.minimum(t - start, end - t) / r, 0.0, 1.0)


def murmur_envelope(p: Patient, beats: pd.DataFrame, n: int, which: str) -> np.ndarray:
    """Peak-1 envelope of the systolic or diastolic murmur over ``n`` samples."""
    t = np.arange(n) / SAMPLE_RATE
    env = np.zeros(n)
    for row in beats.itertuples():
        lo, hi = (row.s1_start - 0.05, row.s2_start + 0.01) if which == "systolic" else (row.s2_start, row.diastole_end)
        i, j = max(int(lo * SAMPLE_RATE), 0), min(int(math.ceil(hi * SAMPLE_RATE)) + 1, n)
        if j <= i:
            continue
        tt = t[i:j]
        if which == "diastolic":
            start = row.a2_onset + 0.02
            end = start + p.diastolic_extent * (row.diastole_end - start)
            e = _ramp(tt, start, end) * np.clip((end - tt) / max(end - start, 1e-3), 0, 1) ** 0.7
        elif p.systolic_murmur_shape == "holosystolic":
            e = _ramp(tt, row.s1_start + 0.01, row.a2_onset)
        else:  # diamond: from S1's end to A2, its top at 41-60% of the way (later for louder murmurs)
            start, end = row.s1_end, row.a2_onset - 0.01
            top = start + (0.35 + 0.25 * min(murmur_grade(p.systolic_murmur), 4) / 4) * (end - start)
            e = np.clip(np.minimum((tt - start) / max(top - start, 1e-3), (end - tt) / max(end - top, 1e-3)), 0, 1)
        env[i:j] = np.maximum(env[i:j], e)
    return env


def render_pcg(p: Patient, beats: pd.DataFrame, seconds: float, key, omit=()) -> np.ndarray:
    """The dry phonocardiogram (float64, ``SAMPLE_RATE``). ``key``: the recording's random key (e.g.
    ``[seed, index]``); component k of ``COMPONENTS`` draws from ``default_rng([*key, 10 + k])``, so leaving
    one out (``omit``, or a ``Patient.without``) changes no other."""
    n = int(round(seconds * SAMPLE_RATE))
    out = np.zeros(n)
    s1_peak = 10 ** (p.s1_intensity_db / 20)
    s2_peak = 10 ** (p.s2_intensity_db / 20)
    for k, name in enumerate(COMPONENTS):
        if name in omit:
            continue
        rng = np.random.default_rng([*key, 10 + k])
        for row in beats.itertuples():
            f = rng.uniform(0.95, 1.05)
            if name == "s1":
                _add(out, row.s1_start, s1_peak * row.s1_gain * transient(p.s1_freq_hz * f, row.m1_tau, rng))
                _add(out, row.s1_start + row.t1_delay,
                     s1_peak * row.s1_gain * p.t1_ratio * transient(0.9 * p.s1_freq_hz * f, row.t1_tau, rng))
            elif name == "s2":
                _add(out, row.a2_onset, s2_peak * row.s2_gain * transient(p.s2_freq_hz * f, row.a2_tau, rng))
                _add(out, row.p2_onset,
                     s2_peak * row.s2_gain * p.p2_ratio * transient(0.9 * p.s2_freq_hz * f, row.p2_tau, rng))
            elif name == "s3" and p.s3 > 0 and not math.isnan(row.s3_onset):
                tau = 0.008 + 0.004 * rng.random()
                _add(out, row.s3_onset, s1_peak * p.s3 * transient(p.s3_freq_hz * f, tau, rng, glide=0.0))
            elif name == "s4" and p.s4 > 0 and not math.isnan(row.s4_onset):
                tau = 0.008 + 0.004 * rng.random()
                _add(out, row.s4_onset, s1_peak * p.s4 * transient(p.s4_freq_hz * f, tau, rng, glide=0.0))
        if name == "systolic_murmur" and p.systolic_murmur > 0:
            out += s1_peak * p.systolic_murmur * murmur_envelope(p, beats, n, "systolic") * \
                band_noise(n, p.systolic_band_hz, rng)
        elif name == "diastolic_murmur" and p.diastolic_murmur > 0:
            out += s1_peak * p.diastolic_murmur * murmur_envelope(p, beats, n, "diastolic") * \
                band_noise(n, p.diastolic_band_hz, rng)
    return out


# ---- the label ---------------------------------------------------------------------------------------

HEART_RATE_NORMAL = (50.0, 110.0)
FREQUENT_ECTOPY = 0.1  # share of beats (a burden above 10% is the usual threshold of "frequent" ectopy)
WIDE_SPLIT_MS = 40.0  # an expiratory A2-P2 split this wide is heard as a wide (persistent) split
#: rule -> test on ``concept_values``; a recording is abnormal when any holds
ABNORMAL_RULES = {
    "systolic_murmur_grade_3": lambda c: c["systolic_murmur_grade"] >= 3,
    "holosystolic_murmur": lambda c: c["systolic_murmur_shape"] == "holosystolic",
    "diastolic_murmur": lambda c: c["diastolic_murmur"] > 0,
    "s3_adult": lambda c: c["s3"] > 0 and c["age_group"] == "adult",
    "s4": lambda c: c["s4"] > 0,
    "heart_rate_out_of_range": lambda c: not HEART_RATE_NORMAL[0] <= c["heart_rate_bpm"] <= HEART_RATE_NORMAL[1],
    "irregular_rhythm": lambda c: c["irregular_rhythm"] == 1,
    "frequent_ectopy": lambda c: c["ectopic_fraction"] > FREQUENT_ECTOPY,
    "wide_split_s2": lambda c: c["s2_split_ms"] >= WIDE_SPLIT_MS,
}


def abnormal_rules(concepts: dict) -> list[str]:
    """The rules of ``ABNORMAL_RULES`` that ``concepts`` meet (empty: normal)."""
    return [name for name, rule in ABNORMAL_RULES.items() if rule(concepts)]
