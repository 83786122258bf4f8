"""Can register and tempo be read from equivariant measurements alone? (issue 30, structural read-outs)

The ``eq3k-joint`` network computes eight measurements that move by a known amount under a transposition
or a time stretch (``midlevel.equivariant_measures``), but its concept layer mixes them with everything
else, and on recorded music the rest (the CNN, the transcriber) reacts to a pitch shifter's artefacts
more than the measurements move: register rose on only 31% of excerpts after a +3 semitone shift.

This study fits *monotone* read-outs, a non-negative combination of the measurements (scikit-learn's
``LinearRegression(positive=True)``), on controlled clips, and asks two things:

1. on the controlled held-out corpus (fitted with 5-fold CV on the randomised one, scored also on the dry
   one), how much concept r does a read-out from the measurements alone cost against the network's own?
2. on recorded music (100 excerpts drawn as the real-recordings benchmark draws them, with another seed),
   does the read-out rise after a +3 semitone shift and follow a time stretch (0.7 ... 1.4)?

Then it sweeps the share of the spectral height in ``melody_p2 + share * spectral_height`` (the
``RegisterHeight`` of ``compact_transcribe_register``) and picks the smallest share whose height rises on
>= 90% of these excerpts. The excerpts use seed 1, so the benchmark's own (seed 0) stay unseen by the choice.

    python studies/structural_readouts.py --seed 1 --dump runs/structural_seed1.npz   # ~6 min on one core
    python studies/structural_readouts.py --from-dump runs/structural_seed1.npz       # the analysis alone, seconds
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "studies"))
import real_recordings as rr  # noqa: E402  (the benchmark's excerpts and perturbations, unchanged)
from recorded_study import add_dump_options, controlled_clips, recorded_excerpts, run  # noqa: E402

import midlevel  # noqa: E402
from midlevel.audio import load_audio  # noqa: E402
from midlevel.datasets.controlled_labels import outside_ratings  # noqa: E402
from midlevel.equivariant_measures import NAMES as EQ_NAMES  # noqa: E402

NAMES = EQ_NAMES + ("note_p2", "note_p4", "note_over_half", "note_over_fifth",
                    "melody_p2", "melody_p4", "melody_over_half", "melody_over_fifth")

READOUTS = {"register": ("note_height", "melody_height", "spectral_height", "power_height"),
            "tempo": ("log_onset_rate", "log_peak_rate", "log_band_peak_rate", "log_pulse_rate")}
CANDIDATES = {
    "register": {"all four heights": READOUTS["register"],
                 "spectral heights": ("spectral_height", "power_height"),
                 "power height": ("power_height",),
                 "note heights": ("note_height", "melody_height"),
                 "melody p2": ("melody_p2",), "melody p4": ("melody_p4",), "melody > 0.5": ("melody_over_half",),
                 "melody > 0.2": ("melody_over_fifth",), "note p4": ("note_p4",), "note > 0.5": ("note_over_half",),
                 "melody p4 + spectral": ("melody_p4", "spectral_height"),
                 "sharp notes + spectral": ("melody_p4", "note_p4", "melody_over_half", "note_over_half", "spectral_height", "power_height")},
    "tempo": {"all four rates": READOUTS["tempo"],
              "peak rates": ("log_peak_rate", "log_band_peak_rate"),
              "peak rates + flux": ("log_onset_rate", "log_peak_rate", "log_band_peak_rate")},
}


@torch.inference_mode()
def measures_and_concepts(model, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One clip (first window) -> its 8 equivariant measures and the network's raw concepts."""
    bb = model.backbone
    n = model.config.window_samples
    wave = torch.as_tensor(rr.fit(audio, n))[None]
    spec = model.frontend(wave)
    probs = torch.sigmoid(bb.salience(bb.whiten(spec)))
    eq = bb.equivariant
    m = eq(bb.log_spectrogram(spec), probs, bb.rhythm.envelopes(spec))[0].numpy()
    extra = []
    for ch in (0, 1):
        p = probs[:, ch]
        extra += [eq.weighted_mean(p ** 2, eq.pitch_octaves), eq.weighted_mean(p ** 4, eq.pitch_octaves),
                  eq.weighted_mean((p - 0.5).clamp_min(0), eq.pitch_octaves),
                  eq.weighted_mean((p - 0.2).clamp_min(0), eq.pitch_octaves)]
    m = np.concatenate([m, torch.stack(extra, 1)[0].numpy()])
    c = model.concept_layer(bb(spec))[0].numpy()
    return m.astype(np.float64), c.astype(np.float64)


def controlled(model, corpus: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, nets, factors = controlled_clips(model, corpus, measures_and_concepts, "measures")
    return rows, nets, outside_ratings(factors)  # loudness, tempo, register


SHARES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
UP_BAR = 0.90  # issue 30: register rises after +3 semitones on >= 90% of excerpts


def measure(args: argparse.Namespace) -> dict[str, np.ndarray]:
    """Every measurement on the controlled corpora and on the recorded excerpts' variants (the dump's arrays)."""
    model = midlevel.load(args.model)
    model.eval()
    fit_m, fit_c, fit_y = controlled(model, Path(args.fit_on))
    also_m, also_c, also_y = controlled(model, Path(args.also))
    excerpts = recorded_excerpts(args.n, args.seed)
    sr = rr.SAMPLE_RATE
    per: dict[str, list] = {k: [] for k in VARIANTS}
    net: dict[str, list] = {k: [] for k in VARIANTS}
    for ex in tqdm(excerpts, desc="recorded excerpts", unit="excerpt"):
        x = ex.audio.astype(np.float32)
        shifted = rr.pitch_shift(x, sr, rr.SHIFT_SEMITONES)
        variants = {"original": x, "shift": shifted,
                    "round_trip": rr.fit(rr.pitch_shift(shifted, sr, -rr.SHIFT_SEMITONES), len(x)),
                    **{f"stretch_{f:g}": rr.stretch(ex.samples, len(x), f) for f in rr.STRETCH_FACTORS}}
        for k, v in variants.items():
            audio = load_audio(v, model.config.sample_rate, source_sample_rate=sr, check_level=False).samples
            m, c = measures_and_concepts(model, audio)
            per[k].append(m)
            net[k].append(c)
    return {"names": np.array(NAMES), "concept_names": np.array(model.config.concept_names),
            "seed": np.array(args.seed), "fit_m": fit_m, "fit_c": fit_c, "fit_y": fit_y,
            "also_m": also_m, "also_c": also_c, "also_y": also_y,
            **{f"real_{k}": np.array(v) for k, v in per.items()}, **{f"net_{k}": np.array(v) for k, v in net.items()}}


VARIANTS = ("original", "shift", "round_trip", *(f"stretch_{f:g}" for f in rr.STRETCH_FACTORS))


def tempo_rho(values: dict[str, np.ndarray]) -> float:
    """Mean over excerpts of the Spearman r between the stretch factor and ``values``."""
    factors = list(rr.STRETCH_FACTORS)
    mat = np.stack([values[f"stretch_{f:g}"] for f in factors], axis=1)
    return float(np.nanmean([spearmanr(factors, row)[0] for row in mat]))


def shift_rows(pred: dict[str, np.ndarray]) -> dict[str, float]:
    sd = float(np.std(pred["original"]))
    return {"up_after_shift": float(np.mean(pred["shift"] > pred["original"])),
            "up_vs_round_trip": float(np.mean(pred["shift"] > pred["round_trip"])),
            "round_trip_move_sd": float(np.mean(np.abs(pred["round_trip"] - pred["original"])) / sd),
            "tempo_rho": tempo_rho(pred)}


def analyse(d: dict[str, np.ndarray]) -> dict:
    idx = {str(n): i for i, n in enumerate(d["names"])}
    col = {c: list(map(str, d["concept_names"])).index(c) for c in ("register", "tempo")}
    label_col = {"tempo": 1, "register": 2}  # outside_ratings order: loudness, tempo, register
    per = {k: d[f"real_{k}"] for k in VARIANTS}
    net = {k: d[f"net_{k}"] for k in VARIANTS}
    results: dict = {"seed": int(d["seed"]), "n_excerpts": len(per["original"]), "controlled": {}, "real": {}, "sweep": []}
    for concept, cands in CANDIDATES.items():
        y, ya = d["fit_y"][:, label_col[concept]], d["also_y"][:, label_col[concept]]
        results["controlled"][f"network {concept}"] = {
            "randomised_r": float(pearsonr(d["fit_c"][:, col[concept]], y)[0]),
            "dry_r": float(pearsonr(d["also_c"][:, col[concept]], ya)[0])}
        results["real"][f"network {concept}"] = shift_rows({k: v[:, col[concept]] for k, v in net.items()})
        for label, cols in cands.items():
            pick = [idx[c] for c in cols]
            reg = make_pipeline(StandardScaler(), LinearRegression(positive=True))
            cv = cross_val_predict(reg, d["fit_m"][:, pick], y, cv=5)
            reg.fit(d["fit_m"][:, pick], y)
            results["controlled"][f"{concept}: {label}"] = {
                "randomised_r": float(pearsonr(cv, y)[0]),
                "dry_r": float(pearsonr(reg.predict(d["also_m"][:, pick]), ya)[0]),
                "weights": dict(zip(cols, map(float, reg[-1].coef_ / reg[0].scale_)))}
            results["real"][f"{concept}: {label}"] = shift_rows({k: reg.predict(v[:, pick]) for k, v in per.items()})
    y, ya = d["fit_y"][:, label_col["register"]], d["also_y"][:, label_col["register"]]
    for share in SHARES:
        def height(m: np.ndarray) -> np.ndarray:
            return (m[:, idx["melody_p2"]] + share * m[:, idx["spectral_height"]])[:, None]
        cv = cross_val_predict(LinearRegression(), height(d["fit_m"]), y, cv=5)
        reg = LinearRegression().fit(height(d["fit_m"]), y)
        results["sweep"].append({"spectral_share": share, "randomised_r": float(pearsonr(cv, y)[0]),
                                 "dry_r": float(pearsonr(reg.predict(height(d["also_m"])), ya)[0]),
                                 **shift_rows({k: height(v)[:, 0] for k, v in per.items()})})
    chosen = next((r for r in results["sweep"] if r["up_after_shift"] >= UP_BAR), None)
    results["chosen_share"] = chosen["spectral_share"] if chosen else None
    return results


def markdown(res: dict) -> str:
    pct = lambda v: f"{100 * v:.0f}%"  # noqa: E731
    lines = ["# Structural read-outs of register and tempo", "",
             f"`studies/structural_readouts.py`: measurements of `eq3k-joint` on the controlled held-out corpus (300 "
             f"clips; read-outs fitted with 5-fold CV on `corpora/heldout-rand`, scored also on the dry "
             f"`corpora/heldout`) and on {res['n_excerpts']} recorded excerpts (seed {res['seed']}). One run.", "",
             "## Read-outs", "",
             "| read-out | r, randomised (CV) | r, dry | +3 semitones: rises | rises vs round trip | round trip moves (sd) | stretch: Spearman |",
             "|---|---|---|---|---|---|---|"]
    for key, c in res["controlled"].items():
        r = res["real"][key]
        lines.append(f"| {key} | {c['randomised_r']:.3f} | {c['dry_r']:.3f} | {pct(r['up_after_shift'])} | "
                     f"{pct(r['up_vs_round_trip'])} | {r['round_trip_move_sd']:.2f} | {r['tempo_rho']:.2f} |")
    lines += ["", "## Register height `melody_p2 + share x spectral_height`", "",
              "| spectral share | register r, randomised (CV) | r, dry | +3 semitones: rises | rises vs round trip | round trip moves (sd) |",
              "|---|---|---|---|---|---|"]
    for r in res["sweep"]:
        mark = " **(chosen)**" if r["spectral_share"] == res["chosen_share"] else ""
        lines.append(f"| {r['spectral_share']:g}{mark} | {r['randomised_r']:.3f} | {r['dry_r']:.3f} | {pct(r['up_after_shift'])} | "
                     f"{pct(r['up_vs_round_trip'])} | {r['round_trip_move_sd']:.2f} |")
    lines += ["", f"Chosen: the smallest share whose height rises on >= {pct(UP_BAR)} of these excerpts."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="runs/eq3k-joint/models/joint-linear")
    p.add_argument("--fit-on", default="corpora/heldout-rand", help="controlled corpus the read-outs are fitted on (5-fold CV)")
    p.add_argument("--also", default="corpora/heldout", help="a second controlled corpus, scored with read-outs fitted on --fit-on")
    add_dump_options(p, "studies/results/structural_readouts")
    args = p.parse_args(argv)
    return run(args, measure, analyse, markdown)


if __name__ == "__main__":
    raise SystemExit(main())
