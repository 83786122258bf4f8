"""What `midlevel explain --report` costs on a recorded track: time, its ratio to a plain explain, file size (issue 32).

    python benchmarks/interactive_report.py [--track FILE] [--seconds 210] [--repeats 3] [--formats html,png]
                                            [--model NAME_OR_DIR] [--out benchmarks/results]

The first ``--seconds`` of ``--track`` (default: ``machine_wars.mp3`` of Debian's ``asc-music``, recorded
music; ``apt-get install -y asc-music``) are decoded once and written as a 16-bit WAV, so the timings do
not include an MP3 decoder. Then, in fresh processes of the ``midlevel`` command (so imports and model
loading count, as for a user), alternating, ``--repeats`` times each: ``midlevel explain TRACK`` (plain),
``midlevel explain TRACK --report out.html`` (the interactive page, the default format) and, once, the
static report with PNG figures (``--format png``; it takes most of a minute). Recorded: the median wall
time of each, the ratio of each report's median to the plain explain's, the output's size, what the
interactive page is made of (track audio, listenable parts, maps, data), and the machine's load average
before and after (the timings mean little on a busy machine). Writes ``interactive_report.json`` and
``.md`` in ``--out``.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

from report_cli import report_parser, run_and_report

DEFAULT_TRACK = Path("/usr/share/games/asc/music/machine_wars.mp3")


def midlevel_command() -> list[str]:
    found = shutil.which("midlevel")
    return [found] if found else [sys.executable, "-c", "import sys; from midlevel.cli import main; sys.exit(main())"]


def excerpt(track: Path, seconds: float, out: Path) -> dict:
    """The first ``seconds`` of ``track`` as a 16-bit WAV at its own rate and channels."""
    info = sf.info(track)
    if info.duration < seconds:
        raise SystemExit(f"{track} lasts {info.duration:.1f} s, less than --seconds {seconds:g}")
    samples, rate = sf.read(track, frames=int(round(seconds * info.samplerate)), dtype="float32")
    sf.write(out, samples, rate, subtype="PCM_16")
    return {"source": str(track), "seconds": round(len(samples) / rate, 3), "sample_rate": rate,
            "channels": info.channels}


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def page_parts(html_text: str) -> dict:
    """MB of the interactive page's pieces: the track, the listenable parts, the maps, everything else."""
    track = re.search(r'<audio id="track"[^>]*src="([^"]+)"', html_text).group(1)
    data = json.loads(re.search(r"<script type='application/json' id='report-data'>(.*?)</script>", html_text,
                                re.S).group(1))
    parts = sum(len(p["audio"] or "") for p in data["parts"].values())
    maps = sum(len(layer["png"]) for layer in data["maps"]) + len(data["spectrogram"]["png"])
    mb = lambda n: round(n / 1e6, 3)  # noqa: E731
    return {"track_audio_mb": mb(len(track)), "listenable_parts_mb": mb(parts), "n_parts": len(data["parts"]),
            "maps_mb": mb(maps), "map_columns": data["maps"][0]["columns"], "map_bands": data["maps"][0]["bands"],
            "other_mb": mb(len(html_text) - len(track) - parts - maps), "windows": len(data["windows"]["starts"])}


def run(args) -> dict:
    formats = [f for f in args.formats.split(",") if f]
    base = midlevel_command() + ["explain"] + (["--model", args.model] if args.model else [])
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="report-bench-") as tmp:
        wav = Path(tmp) / "track.wav"
        track = excerpt(args.track, args.seconds, wav)
        commands = {"plain": base + [str(wav)]}
        for fmt in formats:
            commands[fmt] = base + [str(wav), "--report", str(Path(tmp) / f"report-{fmt}.html"), "--format", fmt]
        times: dict[str, list[float]] = {name: [] for name in commands}
        for repeat in range(args.repeats):
            for name, command in commands.items():
                if name == "png" and repeat >= args.png_repeats:
                    continue
                times[name].append(timed(command))
                print(f"{name} #{repeat + 1}: {times[name][-1]:.2f} s", file=sys.stderr, flush=True)
        sizes = {fmt: (Path(tmp) / f"report-{fmt}.html").stat().st_size for fmt in formats}
        parts = page_parts((Path(tmp) / "report-html.html").read_text()) if "html" in formats else {}
    load_after = os.getloadavg()
    median = {name: statistics.median(values) for name, values in times.items()}
    return {
        "track": track, "model": args.model or "(zoo default)", "repeats": args.repeats,
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "load_before": [round(v, 2) for v in load_before],
                    "load_after": [round(v, 2) for v in load_after]},
        "seconds": {name: [round(v, 2) for v in values] for name, values in times.items()},
        "median_seconds": {name: round(v, 2) for name, v in median.items()},
        "ratio_to_plain": {fmt: round(median[fmt] / median["plain"], 2) for fmt in formats},
        "size_mb": {fmt: round(size / 1e6, 2) for fmt, size in sizes.items()},
        "html_parts": parts,
    }


def markdown(s: dict) -> str:
    t, m = s["track"], s["machine"]
    rows = []
    for name, runs in s["seconds"].items():
        ratio = "" if name == "plain" else f"{s['ratio_to_plain'][name]:.2f}x"
        size = "" if name == "plain" else f"{s['size_mb'][name]:.2f}"
        label = {"plain": "`explain`", "html": "`explain --report` (interactive)",
                 "png": "`explain --report --format png` (static)"}[name]
        rows.append(f"| {label} | {s['median_seconds'][name]:.2f} | {', '.join(f'{v:.2f}' for v in runs)} | "
                    f"{ratio} | {size} |")
    lines = [
        "# The report's cost on a recorded track",
        "",
        f"{Path(t['source']).name}, first {t['seconds']:g} s ({t['sample_rate']} Hz, {t['channels']} channels, as a "
        f"16-bit WAV); model {s['model']}; {m['cpus']} CPUs ({m['processor']}); fresh `midlevel` processes, "
        f"alternating; 1-minute load average {m['load_before'][0]:.2f} before the run ({m['load_after'][0]:.2f} "
        "after, the run's own processes included).",
        "",
        "| command | median (s) | runs (s) | ratio to plain | file (MB) |",
        "|---|---|---|---|---|",
        *rows,
    ]
    if s["html_parts"]:
        p = s["html_parts"]
        lines += ["", f"The interactive page: track audio {p['track_audio_mb']:.2f} MB, {p['n_parts']} listenable "
                      f"parts {p['listenable_parts_mb']:.2f} MB, maps {p['maps_mb']:.2f} MB ({p['map_columns']} x "
                      f"{p['map_bands']} per method), data and script {p['other_mb']:.2f} MB; {p['windows']} "
                      "windows on the timeline (base64 included)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = report_parser(__doc__, "interactive_report")
    p.add_argument("--track", type=Path, default=DEFAULT_TRACK)
    p.add_argument("--seconds", type=float, default=210.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--png-repeats", type=int, default=1)
    p.add_argument("--formats", default="html,png")
    p.add_argument("--model", help="zoo name or model folder (default: the zoo's default)")
    return run_and_report(p.parse_args(), run, markdown)


if __name__ == "__main__":
    sys.exit(main())
