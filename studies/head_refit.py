"""Does refitting the additive head win back held-out emotion r that a continuation cost? (issue 30)

Every continuation trains the backbone on recorded music beside the supervised loss, and the held-out emotion r falls
a little more than the concept r. ``studies/stretch_equivariance.py --refit-head`` refits the head (its own elastic
net, closed form) on the concepts the continued backbone gives the corpus clips. This measures that refit alone, on
finished models, with no training: held-out concept r (unchanged by construction: the backbone is the same) and
emotion r before and after, dry and randomised.

    python studies/head_refit.py --model emotion-structural-linear-mid10-rand1k-v7 \
        --model runs/v8-shift/models/joint-linear        # ~2 min per model on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "studies"))
from codec_consistency import start_run  # noqa: E402
from shift_consistency import controlled, write_results  # noqa: E402
from stretch_equivariance import corpus_spectrograms, refit_head  # noqa: E402

from midlevel import load  # noqa: E402


def markdown(res: dict) -> str:
    names = [Path(c).name for c in res["controlled"]]
    lines = ["# The additive head refitted on a continued backbone's concepts", "",
             f"Each model's head refitted on the concepts its backbone gives the clips of `{res['corpus']}` "
             "(`stretch_equivariance.refit_head`: the head's own elastic net), scored on the held-out corpora. "
             f"One run, {res['minutes']:.0f} min.", "",
             "| model | head | " + " | ".join(f"concept r {n} | emotion r {n}" for n in names) + " |",
             "|---|---|" + "---|---|" * len(names)]
    for model, rows in res["models"].items():
        for head in ("as shipped", "refitted"):
            lines.append(f"| `{model}` | {head} | " + " | ".join(
                f"{rows[head][n]['concept_r']:.3f} | {rows[head][n]['emotion_r']:.3f}" for n in names) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", required=True, help="zoo name or model folder (repeatable)")
    p.add_argument("--corpus", default="corpora/rand1k", help="the corpus whose clips the head is refitted on")
    p.add_argument("--controlled", default="corpora/heldout,corpora/heldout-rand")
    p.add_argument("--out", default="studies/results/head_refit")
    args = p.parse_args()
    _, start = start_run()
    corpora = [c for c in args.controlled.split(",") if c]
    res = {"corpus": args.corpus, "controlled": corpora, "models": {}}
    for name in args.model:
        model = load(name, replace_superseded=False).eval()
        rows = {"as shipped": controlled(model, corpora)}
        refit_head(model, corpus_spectrograms(model, args.corpus))
        rows["refitted"] = controlled(model, corpora)
        res["models"][name] = rows
    res["minutes"] = (time.perf_counter() - start) / 60
    write_results(res, Path(args.out), markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
