"""The default model's ``explain`` speed in this checkout against an older one, measured in one run.

Each version runs in its own subprocess (``PYTHONPATH`` pointing at its ``src``), alternating, on the same
recorded tracks decoded beforehand, with the given torch threads; each reports its best of two passes.

    git worktree add /tmp/old 1b69715         # the commit to compare with
    python benchmarks/speedup_since.py /tmp/old [--threads 1] [--rounds 2] [--tracks GLOB]

Writes benchmarks/results/speedup_since.json.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from midlevel.ioutil import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"
TRACKS = "/usr/share/games/asc/music/*.mp3"


def child(threads: int, pattern: str) -> dict:
    import torch

    import midlevel
    from midlevel.audio import load_audio

    torch.set_num_threads(threads)
    model = midlevel.load()
    rate = model.config.sample_rate
    tracks = [load_audio(p, rate).samples for p in sorted(glob.glob(pattern))[:3]]
    model.explain(tracks[0][: 30 * rate], sample_rate=rate)  # warm-up
    passes = []
    for _ in range(2):
        start = time.perf_counter()
        for samples in tracks:
            model.explain(samples, sample_rate=rate)
        passes.append(time.perf_counter() - start)
    audio = sum(len(s) for s in tracks) / rate
    return {"model": model.name, "audio_seconds": audio, "passes_s": passes, "x_real_time": audio / min(passes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", help="a checkout (e.g. a git worktree) of the version to compare with")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tracks", default=TRACKS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.threads, args.tracks)))
        return
    versions = {"old": Path(args.old).resolve() / "src", "this": Path(__file__).resolve().parents[1] / "src"}
    runs = []
    for round_ in range(args.rounds):
        for label, src in versions.items():
            env = dict(os.environ, PYTHONPATH=str(src))
            out = subprocess.run([sys.executable, __file__, args.old, "--child", "--threads", str(args.threads),
                                  "--tracks", args.tracks], check=True, capture_output=True, text=True, env=env)
            runs.append({"version": label, "round": round_, **json.loads(out.stdout.strip().splitlines()[-1])})
            print(json.dumps(runs[-1]))
    commit = subprocess.run(["git", "-C", args.old, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    speed = {label: max(r["x_real_time"] for r in runs if r["version"] == label) for label in versions}
    result = {"old_commit": commit, "threads": args.threads, "tracks": args.tracks, "runs": runs,
              "best_x_real_time": speed, "speedup": speed["this"] / speed["old"], "loadavg_after": os.getloadavg()}
    atomic_write_text(RESULTS / "speedup_since.json", json.dumps(result, indent=1) + "\n")
    print(f"this checkout {speed['this']:.0f}x vs {commit[:7]} {speed['old']:.0f}x real time: {result['speedup']:.2f}x")


if __name__ == "__main__":
    main()
