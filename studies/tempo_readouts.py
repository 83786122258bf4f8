"""Can tempo be read from a measurement that a time stretch moves by a known amount? (issue 30)

The default's tempo concept follows a time stretch of recorded music (factors 0.7 ... 1.4) with a mean
rank correlation of only 0.42 per excerpt (bar 0.9), and read-outs of the onset *rates* of
``midlevel.equivariant_measures`` reach 0.39-0.59 (``studies/structural_readouts.md``): a phase vocoder
smears every onset, so counts and mean flux change with any stretch, whatever its direction.

This study measures, on the network's own onset envelopes (spectral flux of its front-end, per octave),
where the envelope's energy sits in *modulation frequency*: played ``s`` times faster, every periodicity
of the envelope (beats, note rates) moves up by a factor ``s``, so the weighted mean log modulation
frequency moves by ``ln s`` whatever the onsets' shape (smearing changes the weights, mostly at the top,
not where the periodicities sit). Candidates differ in the weights (magnitude or power of the envelope's
spectrum, a whitening by a reference slope), the band of modulation frequencies, and which envelopes
(summed, or a mean over octaves).

Each candidate is scored like the register read-outs were: r with the tempo rating on the controlled
held-out corpus (a monotone read-out fitted with 5-fold CV on the randomised one, scored also on the dry
one), and the mean per-excerpt Spearman r with the stretch factor on 100 recorded excerpts drawn with
**seed 1**, so the benchmark's own excerpts (seed 0) play no part in the choice.

    python studies/tempo_readouts.py --seed 1 --dump runs/tempo_seed1.npz   # ~10 min on one core
    python studies/tempo_readouts.py --from-dump runs/tempo_seed1.npz       # the analysis alone, seconds
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
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "studies"))
import real_recordings as rr  # noqa: E402  (the benchmark's excerpts and perturbations, unchanged)
from recorded_study import add_dump_options, controlled_clips, recorded_excerpts, run  # noqa: E402

import midlevel  # noqa: E402
from midlevel.audio import load_audio  # noqa: E402
from midlevel.datasets.controlled_labels import outside_ratings  # noqa: E402
from midlevel.music_features import band_centres  # noqa: E402

TEMPO_LABEL = 1  # outside_ratings order: loudness, tempo, register
VARIANTS = tuple(f"stretch_{f:g}" for f in rr.STRETCH_FACTORS)


@torch.inference_mode()
def octave_flux(model, audio: np.ndarray) -> tuple[np.ndarray, float]:
    """One clip (first window) -> (octaves, frames - 1) spectral flux of the front-end summed per octave,
    and the network's tempo concept."""
    n = model.config.window_samples
    wave = torch.as_tensor(rr.fit(audio, n))[None]
    spec = model.frontend(wave)
    flux = torch.relu(spec[:, 0, :, 1:] - spec[:, 0, :, :-1])[0].numpy()  # (bands, t - 1)
    octave = np.floor(np.log2(np.maximum(band_centres(model.config.frontend), 20.0) / 20.0)).astype(int)
    per = np.stack([flux[octave == o].sum(0) for o in range(octave.max() + 1)])
    c = model.concept_layer(model.backbone(spec))[0].numpy()
    return per.astype(np.float32), float(c[model.config.concept_names.index("tempo")])


def controlled(model, corpus: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, nets, factors = controlled_clips(model, corpus, octave_flux, "flux")
    return rows, nets, outside_ratings(factors)[:, TEMPO_LABEL]


def measure(args: argparse.Namespace) -> dict[str, np.ndarray]:
    model = midlevel.load(args.model, replace_superseded=False)  # results of these weights, never a successor's
    model.eval()
    fit_f, fit_c, fit_y = controlled(model, Path(args.fit_on))
    also_f, also_c, also_y = controlled(model, Path(args.also))
    excerpts = recorded_excerpts(args.n, args.seed)
    per: dict[str, list] = {k: [] for k in VARIANTS}
    net: dict[str, list] = {k: [] for k in VARIANTS}
    for ex in tqdm(excerpts, desc="recorded excerpts", unit="excerpt"):
        n = len(ex.audio)
        for f in rr.STRETCH_FACTORS:
            v = rr.stretch(ex.samples, n, f)
            audio = load_audio(v, model.config.sample_rate, source_sample_rate=rr.SAMPLE_RATE, check_level=False).samples
            e, c = octave_flux(model, audio)
            per[f"stretch_{f:g}"].append(e)
            net[f"stretch_{f:g}"].append(c)
    return {"seed": np.array(args.seed), "frame_rate": np.array(model.config.sample_rate / model.config.frontend.hop_length),
            "fit_f": fit_f, "fit_c": fit_c, "fit_y": fit_y, "also_f": also_f, "also_c": also_c, "also_y": also_y,
            **{f"real_{k}": np.array(v) for k, v in per.items()}, **{f"net_{k}": np.array(v) for k, v in net.items()}}


# ----------------------------------------------------------------------------------------------- candidates

def modulation_height(flux: np.ndarray, frame_rate: float, *, lo: float, hi: float, power: float,
                      octaves: str, tilt: float = 0.0, log_env: bool = False) -> np.ndarray:
    """(clips, octaves, t) flux -> (clips,) weighted mean log2 modulation frequency in [lo, hi] Hz."""
    if octaves == "sum":
        env = flux.sum(1, keepdims=True)
    elif octaves == "low":
        env = flux[:, :4].sum(1, keepdims=True)
    else:
        env = flux
    if log_env:
        env = np.log1p(env / (env.mean(-1, keepdims=True) + 1e-6))
    env = env - env.mean(-1, keepdims=True)
    t = env.shape[-1]
    window = np.hanning(t)
    spec = np.abs(np.fft.rfft(env * window, axis=-1))
    freqs = np.fft.rfftfreq(t, 1.0 / frame_rate)
    keep = (freqs >= lo) & (freqs <= hi)
    w = spec[..., keep] ** power * freqs[keep] ** tilt  # (clips, envs, f)
    pos = np.log2(freqs[keep])
    if octaves == "mean":  # each octave's height, weighted by its share of the modulation energy
        h = (w * pos).sum(-1) / (w.sum(-1) + 1e-9)
        share = w.sum(-1)
        return (h * share).sum(-1) / (share.sum(-1) + 1e-9)
    w = w.sum(1)
    return (w * pos).sum(-1) / (w.sum(-1) + 1e-9)


def acf_height(flux: np.ndarray, frame_rate: float, *, lo: float, hi: float, sharp: float) -> np.ndarray:
    """(clips, octaves, t) -> minus the softmax-expected log2 lag (seconds) of the summed envelope's
    autocorrelation over lags for [lo, hi] Hz."""
    env = flux.sum(1)
    env = env - env.mean(-1, keepdims=True)
    t = env.shape[-1]
    spec = np.abs(np.fft.rfft(env, n=2 * t, axis=-1)) ** 2
    acf = np.fft.irfft(spec, axis=-1)[:, :t]
    acf = acf / (acf[:, :1] + 1e-9)
    lags = np.arange(t) / frame_rate
    keep = (lags >= 1 / hi) & (lags <= 1 / lo)
    a = acf[:, keep] * sharp
    p = np.exp(a - a.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return -(p * np.log2(lags[keep])).sum(1)


def candidates(frame_rate: float) -> dict:
    out = {}
    for octaves in ("sum", "mean", "low"):
        for lo, hi in ((0.5, 8.0), (0.5, 4.0), (1.0, 8.0), (0.25, 12.0)):
            for power in (1.0, 2.0):
                for tilt in (0.0, -1.0):
                    key = f"modulation {octaves} {lo:g}-{hi:g} Hz, |X|^{power:g}" + (f", f^{tilt:g}" if tilt else "")
                    out[key] = dict(kind="mod", lo=lo, hi=hi, power=power, octaves=octaves, tilt=tilt)
    out["modulation sum 0.5-8 Hz, log envelope"] = dict(kind="mod", lo=0.5, hi=8.0, power=1.0, octaves="sum", log_env=True)
    for sharp in (5.0, 20.0):
        for lo, hi in ((0.5, 4.0), (1.0, 8.0)):
            out[f"autocorrelation {lo:g}-{hi:g} Hz, sharpness {sharp:g}"] = dict(kind="acf", lo=lo, hi=hi, sharp=sharp)
    return out


def apply(spec: dict, flux: np.ndarray, frame_rate: float) -> np.ndarray:
    kw = {k: v for k, v in spec.items() if k != "kind"}
    return modulation_height(flux, frame_rate, **kw) if spec["kind"] == "mod" else acf_height(flux, frame_rate, **kw)


def stretch_rho(values: dict[str, np.ndarray]) -> tuple[float, float, float]:
    """Mean per-excerpt Spearman r with the stretch factor, the share of excerpts ordered perfectly, and the
    mean Spearman r over the factors other than 1 (the phase vocoder leaves factor 1 nearly unchanged, so it
    is the one version whose onsets are not smeared)."""
    factors = np.array(rr.STRETCH_FACTORS)
    mat = np.stack([values[k] for k in VARIANTS], axis=1)
    rho = np.array([spearmanr(factors, row)[0] for row in mat])
    moved = factors != 1
    rho_moved = np.array([spearmanr(factors[moved], row[moved])[0] for row in mat])
    return float(np.nanmean(rho)), float(np.mean(rho > 0.999)), float(np.nanmean(rho_moved))


def analyse(d: dict[str, np.ndarray]) -> dict:
    fr = float(d["frame_rate"])
    res: dict = {"seed": int(d["seed"]), "n_excerpts": len(d["real_stretch_1"]), "rows": []}
    rho, perfect, rho_moved = stretch_rho({k: d[f"net_{k}"] for k in VARIANTS})
    res["rows"].append({"read_out": "network tempo", "randomised_r": float(pearsonr(d["fit_c"], d["fit_y"])[0]),
                        "dry_r": float(pearsonr(d["also_c"], d["also_y"])[0]), "stretch_rho": rho, "perfect": perfect,
                        "stretch_rho_without_1": rho_moved})
    for key, spec in candidates(fr).items():
        x, xa = apply(spec, d["fit_f"], fr)[:, None], apply(spec, d["also_f"], fr)[:, None]
        cv = cross_val_predict(LinearRegression(), x, d["fit_y"], cv=5)
        reg = LinearRegression().fit(x, d["fit_y"])
        rho, perfect, rho_moved = stretch_rho({k: apply(spec, d[f"real_{k}"], fr) for k in VARIANTS})
        res["rows"].append({"read_out": key, "randomised_r": float(pearsonr(cv, d["fit_y"])[0]),
                            "dry_r": float(pearsonr(reg.predict(xa), d["also_y"])[0]),
                            "slope": float(reg.coef_[0]), "stretch_rho": rho, "perfect": perfect,
                            "stretch_rho_without_1": rho_moved})
    return res


def markdown(res: dict) -> str:
    lines = ["# Tempo from the modulation spectrum of the onset envelopes", "",
             f"`studies/tempo_readouts.py`: one read-out per row, fitted with 5-fold CV on `corpora/heldout-rand` "
             f"(scored also on the dry `corpora/heldout`); stretch on {res['n_excerpts']} recorded excerpts "
             f"(seed {res['seed']}), factors {', '.join(f'{f:g}' for f in rr.STRETCH_FACTORS)}. One run.", "",
             "| read-out | tempo r, randomised (CV) | r, dry | slope | stretch: Spearman | ordered perfectly | Spearman without factor 1 |",
             "|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(f"| {r['read_out']} | {r['randomised_r']:.3f} | {r['dry_r']:.3f} | {r.get('slope', float('nan')):.2f} | "
                     f"{r['stretch_rho']:.2f} | {100 * r['perfect']:.0f}% | {r['stretch_rho_without_1']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="emotion-structural-linear-mid10-rand3k")
    p.add_argument("--fit-on", default="corpora/heldout-rand")
    p.add_argument("--also", default="corpora/heldout")
    add_dump_options(p, "studies/results/tempo_readouts")
    args = p.parse_args(argv)
    return run(args, measure, analyse, markdown)


if __name__ == "__main__":
    raise SystemExit(main())
