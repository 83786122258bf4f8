"""Does the benchmark's vocoder decide the transposition and time-stretch bars? (issue 30)

``benchmarks/real_recordings.py`` transposes and time-stretches recorded music with librosa's phase vocoder
(``librosa.effects.pitch_shift`` / ``time_stretch``): no phase locking and no transient handling, so it smears
every onset and adds "phasiness". The +3/-3 semitone round trip, the control for the shifter's own
artefacts, moves the default's mode-related concepts by 0.39 sd (bar 0.15), and its tempo concept follows
the stretch factor with a per-excerpt Spearman of 0.42 (bar 0.9).

This study measures the same quantities with a second, higher-quality vocoder, Rubber Band (R3 engine,
transient-preserving, through ``pedalboard.time_stretch``), on the same excerpts, for the default. If the control and the tempo order change a lot with the tool, the bars measure the tool
as much as the model, and the benchmark should report both.

    python studies/vocoder_control.py --dump runs/vocoder_seed1.npz    # ~5 min on one core
    python studies/vocoder_control.py --from-dump runs/vocoder_seed1.npz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "studies"))
import real_recordings as rr  # noqa: E402
import tempo_readouts as tr  # noqa: E402
from recorded_study import add_dump_options, recorded_excerpts, run  # noqa: E402

from midlevel import load  # noqa: E402
from midlevel.audio import load_audio  # noqa: E402
from midlevel.training.augment import transposition_matrices  # noqa: E402

MODELS = ("emotion-structural-linear-mid10-rand3k",)  # the default (the former default left the wheel)
VOCODERS = ("librosa", "rubberband")
FACTORS = rr.STRETCH_FACTORS


def rubberband_shift(x: np.ndarray, sr: int, semitones: float) -> np.ndarray:
    import pedalboard as pb

    # the whole spectrum moves, its envelope too, as librosa's shift (a stretch and a resampling) moves it:
    # formant preservation is for voices
    return rr.fit(pb.time_stretch(x.astype(np.float32)[None], sr, 1.0, pitch_shift_in_semitones=semitones,
                                  preserve_formants=False)[0], len(x))


def rubberband_stretch(context: np.ndarray, n: int, factor: float, sr: int, **options) -> np.ndarray:
    """As ``rr.stretch``: ``n`` samples of the music that follows played ``factor`` times as fast (``options``:
    Rubber Band's own, e.g. ``transient_mode``)."""
    import pedalboard as pb

    source = context[: int(round(n * factor))].astype(np.float32)
    return rr.fit(pb.time_stretch(source[None], sr, factor, **options)[0], n)


def shift_versions(x: np.ndarray, sr: int, vocoder: str) -> dict[str, np.ndarray]:
    """``x`` shifted up ``rr.SHIFT_SEMITONES`` by ``vocoder``, and shifted up and back (both ``len(x)`` long)."""
    shift = rr.pitch_shift if vocoder == "librosa" else rubberband_shift
    shifted = shift(x, sr, rr.SHIFT_SEMITONES)
    return {"shift": shifted, "round_trip": rr.fit(shift(shifted, sr, -rr.SHIFT_SEMITONES), len(x))}


def variants(ex, vocoder: str) -> dict[str, np.ndarray]:
    x, sr = ex.audio.astype(np.float32), ex.sample_rate
    if vocoder == "librosa":
        stretched = {f: rr.stretch(ex.samples, len(x), f) for f in FACTORS}
    else:
        stretched = {f: rubberband_stretch(ex.samples, len(x), f, sr) for f in FACTORS}
    return {**shift_versions(x, sr, vocoder), **{f"stretch_{f:g}": v for f, v in stretched.items()}}


def concepts_of_logspec(model, logspec: torch.Tensor) -> torch.Tensor:
    """(B, bands, frames) un-normalised log spectrograms -> (B, K) raw concepts."""
    return model.concepts_from_spectrogram(model.frontend.normalize(logspec))


@torch.inference_mode()
def bin_shifts(model, audio: np.ndarray) -> dict[str, np.ndarray]:
    """The network's raw concepts of one ``SECONDS`` excerpt (one window), and of its log spectrogram
    transposed by +3 semitones and +3 then -3 with the matrices training transposed clips with
    (``transposition_matrices``): the shift the network was taught, with no vocoder at all."""
    mats = transposition_matrices(model.config.frontend, rr.SHIFT_SEMITONES)
    up, down = mats[-1], mats[0]
    wave = torch.as_tensor(rr.fit(audio, model.config.window_samples))[None]
    logspec = model.frontend.log_spectrogram(wave)[0]
    raw = lambda ls: concepts_of_logspec(model, ls[None])[0].double().numpy()  # noqa: E731
    return {"bins:original": raw(logspec), "bins:shift": raw(up @ logspec), "bins:round_trip": raw(down @ (up @ logspec))}


def measure(args: argparse.Namespace) -> dict[str, np.ndarray]:
    excerpts = recorded_excerpts(args.n, args.seed)
    models = {name: load(name, replace_superseded=False) for name in MODELS}  # never a successor in its place
    keys = ["original"] + [f"{v}:{k}" for v in VOCODERS for k in ["shift", "round_trip"] +
                           [f"stretch_{f:g}" for f in FACTORS]]
    out = {f"{m}|{k}": [] for m in MODELS for k in keys}
    default = models[MODELS[0]]
    for ex in tqdm(excerpts, desc="excerpts", unit="excerpt"):
        audio = {"original": ex.audio.astype(np.float32)}
        for v in VOCODERS:
            audio |= {f"{v}:{k}": a for k, a in variants(ex, v).items()}
        for m, model in models.items():
            for k in keys:
                out[f"{m}|{k}"].append(rr.outputs_of(model, audio[k], ex.sample_rate)[0])
        model_rate = load_audio(audio["original"], default.config.sample_rate, source_sample_rate=ex.sample_rate,
                                check_level=False).samples
        for k, v in bin_shifts(default, model_rate).items():
            out.setdefault(f"{MODELS[0]}|{k}", []).append(v)
        # the tempo read-outs of studies/tempo_readouts.py read its onset envelopes
        for k in keys:
            if "stretch" in k:
                at_rate = load_audio(audio[k], default.config.sample_rate, source_sample_rate=ex.sample_rate,
                                     check_level=False).samples
                out.setdefault(f"flux|{k}", []).append(tr.octave_flux(default, at_rate)[0])
    data = {k: np.array(v) for k, v in out.items()}
    for m, model in models.items():
        data[f"{m}|names"] = np.array(model.config.concept_names)
    data["seed"] = np.array(args.seed)
    data["frame_rate"] = np.array(default.config.sample_rate / default.config.frontend.hop_length)
    return data


def transposition_row(base: np.ndarray, shifted: np.ndarray, trip: np.ndarray, sd: np.ndarray,
                      names: list[str]) -> dict:
    """Register up (vs the original and vs the round trip) and the mode concepts moved by shift and round trip."""
    reg = names.index("register")
    shift = rr.moved(base, shifted, sd, names, rr.MODE_CONCEPTS)
    back = rr.moved(base, trip, sd, names, rr.MODE_CONCEPTS)
    return {"register_up": float(np.mean(shifted[:, reg] > base[:, reg])),
            "register_up_vs_round_trip": float(np.mean(shifted[:, reg] > trip[:, reg])),
            "shift_mode": shift["mean"], "round_trip_mode": back["mean"],
            "shift_minus_round_trip": shift["mean"] - back["mean"],
            "shift_per_concept": shift["per_concept"], "round_trip_per_concept": back["per_concept"]}


def analyse(data: dict[str, np.ndarray]) -> dict:
    res = {}
    for m in MODELS:
        names = [str(n) for n in data[f"{m}|names"]]
        orig = data[f"{m}|original"]
        sd = rr.sd_of(orig)
        tempo = names.index("tempo")
        row = {}
        for v in VOCODERS:
            get = lambda k: data[f"{m}|{v}:{k}"]  # noqa: E731
            rho, _, rho_moved = tr.stretch_rho({k: get(k)[:, tempo] for k in tr.VARIANTS})
            row[v] = {**transposition_row(orig, get("shift"), get("round_trip"), sd, names),
                      "tempo_spearman": rho, "tempo_spearman_without_1": rho_moved,
                      "tempo_at_factor": {f"{f:g}": float(np.mean((get(f"stretch_{f:g}")[:, tempo] - orig[:, tempo])
                                                                  / sd[tempo])) for f in FACTORS}}
        bins = {k: data[f"{m}|bins:{k}"] for k in ("original", "shift", "round_trip")}
        row["spectrogram bins"] = {
            **transposition_row(bins["original"], bins["shift"], bins["round_trip"], sd, names),
            "same_as_explain": float(np.max(np.abs(bins["original"] - orig))),
            "tempo_spearman": None, "tempo_spearman_without_1": None, "tempo_at_factor": None}
        res[m] = row
    fr = float(data["frame_rate"])
    readouts = {}  # each modulation-spectrum tempo read-out: mean per-excerpt Spearman with the factor
    for v in VOCODERS:
        flux = {f"stretch_{f:g}": data[f"flux|{v}:stretch_{f:g}"] for f in FACTORS}
        for key, spec in tr.candidates(fr).items():
            rho, _, rho_moved = tr.stretch_rho({k: tr.apply(spec, flux[k], fr) for k in tr.VARIANTS})
            readouts.setdefault(key, {})[v] = {"spearman": rho, "without_1": rho_moved}
    return {"readouts": readouts, "excerpts": int(len(data[f"{MODELS[0]}|original"])), "seed": int(data["seed"]), "models": res}


def markdown(res: dict) -> str:
    lines = ["# The benchmark's vocoder vs Rubber Band: transposition control and tempo order", "",
             f"{res['excerpts']} recorded excerpts drawn with seed {res['seed']} (the benchmark draws seed 0). Mode concepts moved in sd of each "
             "concept over the excerpts; tempo: mean per-excerpt Spearman with the factor (0.7, 0.85, 1, 1.2, "
             "1.4), and without factor 1.", "",
             "| model | vocoder | register up | vs round trip | shift (mode) | round trip (mode) | shift - trip | "
             "tempo Spearman | without 1 | tempo at 0.7 / 1 / 1.4 (sd from original) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for m, row in res["models"].items():
        for v, r in row.items():
            t = r["tempo_at_factor"]
            tempo = ("- | - | -" if t is None else f"{r['tempo_spearman']:.2f} | {r['tempo_spearman_without_1']:.2f} | "
                     f"{t['0.7']:+.2f} / {t['1']:+.2f} / {t['1.4']:+.2f}")
            lines.append(f"| `{m}` | {v} | {r['register_up']:.0%} | {r['register_up_vs_round_trip']:.0%} | "
                         f"{r['shift_mode']:.2f} | {r['round_trip_mode']:.2f} | {r['shift_minus_round_trip']:+.2f} | "
                         f"{tempo} |")
    lines += ["", "Mode concepts moved by the +3 shift and by the +3/-3 round trip, per concept (sd):", "",
              "| model | vocoder | " + " | ".join(f"{c}: shift / trip" for c in rr.MODE_CONCEPTS) + " |",
              "|---|---|" + "---|" * len(rr.MODE_CONCEPTS)]
    for m, row in res["models"].items():
        for v, r in row.items():
            lines.append(f"| `{m}` | {v} | " + " | ".join(
                f"{r['shift_per_concept'][c]:.2f} / {r['round_trip_per_concept'][c]:.2f}" for c in rr.MODE_CONCEPTS) + " |")
    best = sorted(res["readouts"].items(), key=lambda kv: -kv[1]["rubberband"]["spearman"])[:5]
    lines += ["", "Tempo read-outs of `studies/tempo_readouts.py` (modulation spectrum of the onset envelopes), the five "
              "best with Rubber Band: mean per-excerpt Spearman with the factor (without factor 1):", "",
              "| read-out | librosa | Rubber Band |", "|---|---|---|"]
    for key, r in best:
        lines.append(f"| {key.replace('|', '&#124;')} | {r['librosa']['spearman']:.2f} ({r['librosa']['without_1']:.2f}) | "
                     f"{r['rubberband']['spearman']:.2f} ({r['rubberband']['without_1']:.2f}) |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dump_options(p, "studies/results/vocoder_control")
    return run(p.parse_args(), measure, analyse, markdown)


if __name__ == "__main__":
    sys.exit(main())
