"""Held-out scores on dry and on randomised recording conditions, side by side (issue 30).

    midlevel corpus build --out corpora/heldout-rand --n 300 --seed 2 --only-split test --conditions randomised
    python studies/heldout_randomised.py --data corpora/heldout-rand \\
        --model default=emotion-measures-linear-mid10-ctrl48k --model rand3k-joint=runs/rand3k-joint/models/joint-linear ...

The dry held-out corpus (``corpora/heldout``: seed 2, unseen pieces, one soundfont, fixed gain) ties the
``loudness`` label (the played velocity) to the file's level, so a model that hears the file's gain scores
well there and a level-invariant one cannot. ``corpora/heldout-rand`` is the same 300 clips under
randomised conditions (soundfont, room, EQ, compression, level, noise, codec): level says nothing there.
Each model is scored by ``midlevel.evaluation.evaluate``, as ``midlevel evaluate`` does (first window, 200 piece
resamples for the intervals). Writes ``studies/results/heldout_randomised.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def evaluate(model: str, data: str, resamples: int) -> dict:
    """``midlevel evaluate``'s result for one model on one corpus, as its ``--out`` JSON holds it."""
    from midlevel.evaluation import evaluate as score, load_model, to_json

    loaded, sha256 = load_model(model)
    return json.loads(to_json(score(loaded, data, resamples=resamples, progress=False, weights_sha256=sha256)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", action="append", default=None, help="held-out corpora (default: dry and randomised)")
    p.add_argument("--model", action="append", required=True, metavar="NAME=MODEL")
    p.add_argument("--resamples", type=int, default=200)
    p.add_argument("--out", default="studies/results")
    p.add_argument("--merge", action="store_true", help="keep the earlier results file's rows of models not named here")
    args = p.parse_args(argv)
    data = args.data or ["corpora/heldout", "corpora/heldout-rand"]
    earlier = Path(args.out) / "heldout_randomised.json"
    results: dict[str, dict[str, dict]] = json.loads(earlier.read_text()) if args.merge and earlier.is_file() else {}
    for spec in args.model:
        name, model = spec.split("=", 1)
        results[name] = {d: evaluate(model, d, args.resamples) for d in data}
    concepts = next((list(r["concepts"]) for per in results.values() for r in per.values() if r.get("concepts")), [])
    lines = [f"# Held-out scores, dry and randomised recording conditions\n",
             f"`studies/heldout_randomised.py`: {', '.join(f'`{d}`' for d in data)} (300 clips of unseen pieces each); "
             "Pearson r of the first window per clip, as `midlevel evaluate` reports. One run.\n"]
    for d in data:
        lines += [f"\n## {d}\n", "| model | " + " | ".join(concepts) + " | emotions (mean) |",
                  "|---|" + "---|" * (len(concepts) + 1)]
        for name, per in results.items():
            r = per[d]
            cells = [f"{r['concepts'][c]['r']:.3f}" if r.get("concepts") and c in r["concepts"] else "-" for c in concepts]
            lines.append(f"| `{name}` | " + " | ".join(cells) + f" | {r['targets']['mean']['r']:.3f} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "heldout_randomised.json").write_text(json.dumps(results, indent=1))
    (out / "heldout_randomised.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
