"""Does a continuation meet its own round-trip term on its own training music? (issue 30)

``studies/stretch_equivariance.py --round-trip-versions`` holds the mode-related concepts of transposition round
trips of the training excerpts (Rubber Band's or a plain phase vocoder's, some MP3-encoded) at the recording's
reading. On the benchmark's music librosa's round trip stayed near 0.30 sd over three continuations, even with four
times the weight. Before asking whether the term carries over to other music, this asks whether training met it at
all: the mode concepts' move on the very training versions the cache holds, model by model.

    python studies/training_round_trips.py --cache runs/cache/versions-KEY.safetensors \
        --models runs/rand3k,runs/v5/models/joint-linear,runs/v6-root/models/joint-linear   # ~2 min
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "studies"))
import real_recordings as rr  # noqa: E402
from shift_consistency import batched_concepts, write_results  # noqa: E402

from midlevel import load  # noqa: E402



def markdown(res: dict) -> str:
    settings, trips = res["settings"], res["trips"]
    lines = ["# The round-trip term on the training music itself", "",
             f"The first {res['n']} training excerpts of `{res['cache']}` (packages: {', '.join(settings['packages'])}); "
             f"the mode-related concepts' mean |change| (sd over the recordings) from each recording to its {trips} "
             "round trips (Rubber Band or the plain vocoder, 1 ... 4 semitones and back, half of them MP3-encoded) "
             f"and to its {res['stretched']} stretched versions, averaged over the versions.", "",
             "| model | round trips (mode, sd) | stretches (mode, sd) |", "|---|---|---|"]
    lines += [f"| `{m}` | {r['round_trips']:.3f} | {r['stretches']:.3f} |" for m, r in res["rows"].items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", required=True, help="a versions file stretch_equivariance.py --cache wrote")
    p.add_argument("--models", required=True, help="comma-separated zoo names or model folders")
    p.add_argument("--n", type=int, default=300, help="training excerpts (the first N of the cache)")
    p.add_argument("--out", default="studies/results/training_round_trips")
    args = p.parse_args()
    torch.set_num_threads(2)
    torch.set_flush_denormal(True)
    with safe_open(args.cache, "pt") as f:
        settings = json.loads(f.metadata()["settings"])
        specs = f.get_slice("specs")[: args.n]
    trips = int(settings["round_trip_versions"])
    first_trip = specs.shape[1] - trips  # the round trips are the last versions (stretched_excerpts)
    rows = {}
    for spec in args.models.split(","):
        model = load(spec, replace_superseded=False).eval()
        names = list(model.config.concept_names)
        recorded = batched_concepts(model, specs[:, 0]).double().numpy()
        sd = rr.sd_of(recorded)

        def move(versions: range) -> float:
            return float(np.mean([rr.moved(recorded, batched_concepts(model, specs[:, v]).double().numpy(), sd, names,
                                           rr.MODE_CONCEPTS)["mean"] for v in versions]))

        rows[spec] = {"round_trips": move(range(first_trip, specs.shape[1])), "stretches": move(range(1, first_trip))}
    write_results({"cache": Path(args.cache).name, "n": int(specs.shape[0]), "trips": trips, "stretched": first_trip - 1,
                   "settings": settings, "rows": rows}, Path(args.out), markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
