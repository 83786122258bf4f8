"""Between a model and its continuation: weights interpolated, floors against recorded behaviour (issue 30).

A continuation that moves the transposition bars a long way can cost held-out concept r beyond issue 30's budget
(``docs/studies/stretch_equivariance.md``). Averaging a fine-tuned model's weights with its start's (WiSE-FT,
Wortsman et al., 2022, "Robust fine-tuning of zero-shot models") is a known way to keep much of what fine-tuning
gained at a fraction of what it cost. Both models share every frozen part and their batch-norm statistics (training
ran in eval mode), so ``base + alpha * (continued - base)`` is the same network with weights part of the way.

    python studies/weight_interpolation.py --base runs/v6-root/models/joint-linear \
        --continued runs/v8-shift/models/joint-linear --alphas 0.5,0.75    # ~4 min per alpha on 2 cores
    python studies/weight_interpolation.py --base runs/v6-root/models/joint-linear \
        --continued runs/v8-shift/models/joint-linear --save 0.5=runs/v7-wise   # the candidate, for build_zoo.py --add
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "studies"))
from codec_consistency import start_run  # noqa: E402
from recorded_study import recorded_excerpts  # noqa: E402
from shift_consistency import behaviour_table, controlled, recorded_behaviour, write_results  # noqa: E402

from midlevel import load  # noqa: E402
from midlevel.checkpoint import weights_sha256  # noqa: E402
from midlevel.ioutil import atomic_write_text  # noqa: E402



def interpolated(base, continued, alpha: float, by_module: dict[str, float] | None = None):
    """A copy of ``base`` with every floating-point tensor moved ``alpha`` of the way to ``continued``'s, or
    ``by_module[prefix]`` of the way for the tensors whose name starts with that prefix (the longest one wins)."""
    out = copy.deepcopy(base)
    far = continued.state_dict()

    def alpha_of(name: str) -> float:
        prefixes = [p for p in (by_module or {}) if name.startswith(p)]
        return by_module[max(prefixes, key=len)] if prefixes else alpha

    out.load_state_dict({k: v + alpha_of(k) * (far[k] - v) if v.is_floating_point() else v
                         for k, v in base.state_dict().items()})
    return out.eval()


def parse_alpha(spec: str) -> tuple[float, dict[str, float]]:
    """'0.5' -> (0.5, {}); '0.5/backbone.salience=1' -> (0.5, {'backbone.salience': 1.0}): one alpha for every
    tensor, then per-module exceptions by name prefix."""
    alpha, *rest = spec.split("/")
    try:
        return float(alpha), {k: float(v) for k, v in (r.split("=", 1) for r in rest)}
    except ValueError:
        raise SystemExit(f"--alphas: {spec!r} is not ALPHA or ALPHA/PREFIX=ALPHA/... (e.g. 0.5/backbone.salience=1)")


def alpha_label(spec: str) -> str:
    alpha, by_module = parse_alpha(spec)
    return f"alpha {alpha:g}" + "".join(f", {k} {v:g}" for k, v in by_module.items())


def save(model, base, continued, alpha: float, args: argparse.Namespace, folder: Path,
         by_module: dict[str, float] | None = None) -> Path:
    """Write the interpolated model with what made it: the continuation's training metadata (what moved, on which
    terms, from which start) and the average, both ends named by sha256."""
    if not (Path(args.continued) / "config.json").is_file():
        raise SystemExit(f"--save: --continued {args.continued} is not a run's model folder (FAMILY/models/NAME); "
                         "the saved family record copies its run's results.json")
    average = {"alpha": alpha, **({"by_module": by_module} if by_module else {})}
    model.config.metadata = {**continued.config.metadata,
                             "weight_average": {**average,
                                                "base": {"model": args.base, "weights_sha256": weights_sha256(base)},
                                                "continued": {"model": args.continued,
                                                              "weights_sha256": weights_sha256(continued)}}}
    out = model.save_pretrained(folder / "models" / "joint-linear")
    # The family record build_zoo.py --add reads: the continuation's steps and time (this average costs no training
    # of its own), with the average named, so the card says which weights it ships.
    far_family = json.loads((Path(args.continued).parent.parent / "results.json").read_text())
    far = far_family["models"][Path(args.continued).name]
    start = continued.config.metadata.get("init_from", {})  # the base by its zoo name where the continuation began there
    base_name = start["model"] if start.get("weights_sha256") == weights_sha256(base) else args.base
    record = {**far, "valid": None, "test": None,
              "weight_average": {**average, "base": base_name, "continued": args.continued}}
    atomic_write_text(folder / "results.json", json.dumps({"models": {"joint-linear": record}}, indent=1) + "\n")
    return out


def markdown(res: dict) -> str:
    lines = ["# Weights interpolated between a model and its continuation", "",
             f"`{res['base']}` (alpha 0) moved alpha of the way to `{res['continued']}` (alpha 1), every floating-point "
             f"tensor alike but the parts a row names with their own alpha; {res['n']} recorded excerpts of the "
             f"benchmark's packages (seed {res['seed']}) and the controlled held-out corpora. One run, {res['minutes']:.0f} min.", ""] + behaviour_table(res["models"])
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True)
    p.add_argument("--continued", required=True)
    p.add_argument("--alphas", default="0.5,0.75", help="comma-separated; each ALPHA, or ALPHA/PREFIX=ALPHA/... to move "
                   "the tensors named PREFIX... their own way (e.g. 0/backbone.salience=1: the note transcriber alone)")
    p.add_argument("--n", type=int, default=100, help="recorded excerpts (the studies' seed 1, not the benchmark's)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--controlled", default="corpora/heldout,corpora/heldout-rand")
    p.add_argument("--out", default="studies/results/weight_interpolation")
    p.add_argument("--save", metavar="ALPHA=DIR", help="only write the model at ALPHA (or ALPHA/PREFIX=ALPHA/...) to "
                   "DIR/models/joint-linear (the family layout scripts/build_zoo.py --add ships from), its metadata "
                   "naming both ends; no scoring")
    args = p.parse_args()
    _, start = start_run()
    base, continued = (load(m, replace_superseded=False).eval() for m in (args.base, args.continued))
    if args.save:
        spec, folder = args.save.rsplit("=", 1)
        alpha, by_module = parse_alpha(spec)
        save(interpolated(base, continued, alpha, by_module), base, continued, alpha, args, Path(folder), by_module)
        return 0
    excerpts = recorded_excerpts(args.n, args.seed)
    corpora = [c for c in args.controlled.split(",") if c]
    models = {alpha_label(a): interpolated(base, continued, *parse_alpha(a)) for a in args.alphas.split(",")}
    res = {"base": args.base, "continued": args.continued, "seed": args.seed, "n": len(excerpts), "models": {}}
    for label, model in models.items():
        res["models"][label] = {"recorded": recorded_behaviour(model, excerpts), "controlled": controlled(model, corpora)}
    res["minutes"] = (time.perf_counter() - start) / 60
    write_results(res, Path(args.out), markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
