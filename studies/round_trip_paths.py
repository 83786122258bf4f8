"""Which path through the network carries a pitch shift's move on the mode concepts? (issue 30)

The benchmark's control for a pitch shift's own artefacts is librosa's +3 then -3 semitone round trip; it
moves the default's mode-related concepts (minorness, tonal stability, melodiousness, dissonance) by about
0.30 sd, twice issue 30's bar. Continuations that held those concepts under round trips of training music,
even at four times the weight, left it there. Those continuations train every part of the backbone but the
note transcriber (``PitchSalience``), whose notes feed the tonal and melodic descriptors and the corpus's
note formulas.

The backbone's pre-activation is a sum of affine maps of eight feature groups (batch norm in eval mode, then
linear; ``CompactTranscribeBackbone.forward_with_salience``), so the move can be traced by patching: compute
every group on the round trip, put one group (or everything the transcriber's notes feed) back to its value
on the unprocessed excerpt, and see how much of the move is left; and the other way round, let only that
group move. Where the move lives says which part a continuation has to train.

    python studies/round_trip_paths.py --seed 0 --model runs/v6-root/models/joint-linear --dump runs/round_trip_paths.npz    # ~4 min on one core
    python studies/round_trip_paths.py --from-dump runs/round_trip_paths.npz
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
from recorded_study import add_dump_options, recorded_excerpts, run  # noqa: E402

from midlevel import load  # noqa: E402
from midlevel.audio import load_audio  # noqa: E402

MODEL = "emotion-structural-linear-mid10-rand1k-v7"
MIXED = ("cnn", "pitch", "motion", "rhythm", "notes", "melody")  # concatenated before the mixing layer
GROUPS = MIXED + ("note_measures", "equivariant", "register")
#: the groups computed from the transcriber's note probabilities
FROM_NOTES = ("notes", "melody", "note_measures")


def groups(bb, spec: torch.Tensor, probs: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Every feature group the backbone sums (as ``forward_with_salience`` computes them), plus the notes; with
    ``probs``, the transcriber's note probabilities replaced by these (the transcriber is then not run)."""
    whitened = bb.whiten(spec)
    probs = torch.sigmoid(bb.salience(whitened)) if probs is None else probs
    logspec = bb.log_spectrogram(spec)
    return {"cnn": bb.cnn(spec), "pitch": bb.pitch(whitened), "motion": bb.motion(whitened),
            "rhythm": bb.rhythm(spec), "notes": bb.note_pitch.features(bb.salience.pitch_classes(probs[:, 0])),
            "melody": bb.melody(probs[:, 1]),
            "note_measures": torch.cat([bb.note_keys(probs[:, 0]), bb.note_melody(probs[:, 1])], dim=1),
            "equivariant": bb.equivariant(logspec, probs, bb.rhythm.envelopes(spec)),
            "register": bb.register_height(logspec, probs)[:, None], "probs": probs}


def assemble(model, g: dict[str, torch.Tensor]) -> torch.Tensor:
    """Feature groups -> raw concepts, as the backbone and the concept layer combine them."""
    bb = model.backbone
    pre = bb.mix[1](bb.mix[0](torch.cat([g[k] for k in MIXED], dim=1)))
    pre = pre + bb.note_measures_in(g["note_measures"]) + bb.equivariant_in(g["equivariant"])
    return model.concept_layer(torch.cat([torch.relu(pre), g["register"]], dim=1))


@torch.inference_mode()
def patched(model, clean: np.ndarray, processed: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Per processed version: raw concepts of the unprocessed excerpt, of the version, and of the version with each
    group (or everything the notes feed) put back, or with only it moved. The excerpt's groups are computed once."""
    window = model.config.window_samples
    specs = model.frontend(torch.as_tensor(np.stack([rr.fit(a, window) for a in (clean, *processed.values())])))
    every = groups(model.backbone, specs)
    x = {k: v[:1] for k, v in every.items()}
    original = assemble(model, x)
    direct = model.concepts_from_spectrogram(specs[:1])
    assert torch.allclose(original, direct, atol=1e-4), "assemble() no longer mirrors the backbone"
    res = {}
    for i, variant in enumerate(processed, start=1):
        y = {k: v[i:i + 1] for k, v in every.items()}
        out = {"original": original, "round_trip": assemble(model, y)}  # "round_trip": the version, whichever it is
        for name, keys in [(k, (k,)) for k in GROUPS] + [("notes, melody, note measures", FROM_NOTES)]:
            out[f"fixed:{name}"] = assemble(model, {**y, **{k: x[k] for k in keys}})
            out[f"only:{name}"] = assemble(model, {**x, **{k: y[k] for k in keys}})
        # everything the transcriber feeds, the equivariant measures and the register height included
        out["fixed:transcriber"] = assemble(model, groups(model.backbone, specs[i:i + 1], x["probs"]))
        out["only:transcriber"] = assemble(model, groups(model.backbone, specs[:1], y["probs"]))
        res[variant] = {k: v[0].double().numpy() for k, v in out.items()}
    return res


def measure(args: argparse.Namespace) -> dict[str, np.ndarray]:
    model = load(args.model).eval()
    rows: dict[str, list] = {}
    packages = tuple(args.packages.split(",")) if args.packages else rr.DEFAULT_PACKAGES
    for ex in tqdm(recorded_excerpts(args.n, args.seed, packages), desc="excerpts", unit="excerpt"):
        x = ex.audio.astype(np.float32)
        shifted = rr.pitch_shift(x, ex.sample_rate, rr.SHIFT_SEMITONES)
        versions = {"round_trip": rr.fit(rr.pitch_shift(shifted, ex.sample_rate, -rr.SHIFT_SEMITONES), len(x)),
                    "shift": shifted}
        at = lambda a: load_audio(a, model.config.sample_rate, source_sample_rate=ex.sample_rate,  # noqa: E731
                                  check_level=False).samples
        for variant, concepts in patched(model, at(x), {k: at(a) for k, a in versions.items()}).items():
            for k, v in concepts.items():
                rows.setdefault(f"{variant}|{k}", []).append(v)
    data = {k: np.array(v) for k, v in rows.items()}
    data["names"] = np.array(model.config.concept_names)
    data["model"] = np.array(args.model)
    data["seed"] = np.array(args.seed)
    data["packages"] = np.array(",".join(packages))
    return data


VARIANTS = {"round_trip": "the round trip", "shift": "the +3 shift"}


def analyse(data: dict[str, np.ndarray]) -> dict:
    names = [str(n) for n in data["names"]]
    labels = list(GROUPS) + ["notes, melody, note measures", "transcriber"]
    res = {"model": str(data["model"]), "seed": int(data["seed"]), "groups": labels, "variants": {},
           "packages": str(data["packages"]) if "packages" in data else ",".join(rr.DEFAULT_PACKAGES)}
    for variant in VARIANTS:
        orig = data[f"{variant}|original"]
        sd = rr.sd_of(orig)
        move = lambda k: rr.moved(orig, data[f"{variant}|{k}"], sd, names, rr.MODE_CONCEPTS)  # noqa: E731
        rows = {"all": move("round_trip")}  # ``patched`` calls each processed version "round_trip"
        for name in labels:
            rows[f"fixed:{name}"] = move(f"fixed:{name}")
            rows[f"only:{name}"] = move(f"only:{name}")
        res["variants"][variant] = rows
        res["n"] = int(len(orig))
    return res


def markdown(res: dict) -> str:
    per = lambda r: " | ".join(f"{r['per_concept'][c]:.2f}" for c in rr.MODE_CONCEPTS)  # noqa: E731
    lines = [f"# Which path carries a pitch shift's move on the mode concepts? `{res['model']}`", "",
             f"{res['n']} excerpts of " + ("the benchmark's music" if res["packages"] == ",".join(rr.DEFAULT_PACKAGES)
                                           else res["packages"].replace(",", ", ")) + f" (seed {res['seed']}); librosa's +{rr.SHIFT_SEMITONES} "
             f"semitone shift, and its +{rr.SHIFT_SEMITONES} then -{rr.SHIFT_SEMITONES} round trip (the benchmark's "
             "control); mean |change| of the mode-related concepts in sd over the excerpts (the benchmark's unit). "
             "*Put back*: every group computed on the processed version except this one, taken from the unprocessed "
             "excerpt (what is left of the move); *only this moves*: the reverse. *transcriber*: the note "
             "probabilities, and everything computed from them (the equivariant measures and register height too)."]
    for variant, title in VARIANTS.items():
        rows = res["variants"][variant]
        total = rows["all"]
        lines += ["", f"## {title[0].upper() + title[1:]}", "",
                  "| path | put back: move left | only this moves | " + " | ".join(f"{c}, only" for c in rr.MODE_CONCEPTS)
                  + " |", "|---|---|---|" + "---|" * len(rr.MODE_CONCEPTS),
                  f"| nothing ({title}) | {total['mean']:.2f} | {total['mean']:.2f} | {per(total)} |"]
        for g in res["groups"]:
            fixed, only = rows[f"fixed:{g}"], rows[f"only:{g}"]
            lines.append(f"| {g} | {fixed['mean']:.2f} | {only['mean']:.2f} | {per(only)} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dump_options(p, "studies/results/round_trip_paths")
    p.add_argument("--model", default=MODEL)
    p.add_argument("--packages", help="comma-separated Debian packages to draw the excerpts from (default: the "
                   "benchmark's), e.g. a continuation's training music")
    return run(p.parse_args(), measure, analyse, markdown)


if __name__ == "__main__":
    sys.exit(main())
