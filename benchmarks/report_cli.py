"""The command line the held-out benchmarks (and the corpus studies in ``studies/``) share: where results
and cached spectrograms go, how many threads, and how a run ends (JSON and Markdown written atomically, the
Markdown printed). ``studies/*.py`` import it from here through ``sys.path``."""

from __future__ import annotations

import argparse
import platform
from pathlib import Path
from typing import Callable

from midlevel.ioutil import write_report


def report_parser(doc: str, stem: str, results: Path | None = None) -> argparse.ArgumentParser:
    """A parser described by the first line of ``doc`` with ``--cache-dir``, ``--out``, ``--stem``, ``--threads``.

    ``--out`` defaults to ``results``, or to ``benchmarks/results`` when it is not given."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--cache-dir", type=Path, default=Path("runs/cache"))
    p.add_argument("--out", type=Path, default=results or Path(__file__).resolve().parent / "results")
    p.add_argument("--stem", default=stem, help="results file name, without suffix")
    p.add_argument("--threads", type=int, default=1)
    return p


def run_and_report(args: argparse.Namespace, run: Callable[[argparse.Namespace], dict],
                   markdown: Callable[[dict], str]) -> int:
    summary = run(args)
    write_report(args.out, args.stem, summary, markdown(summary))
    print(markdown(summary))
    return 0


def cpu_name() -> str:
    """The processor's model name (for the results' machine line), or what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
