"""Tables in the 2019 paper's format, built from a ``results.json`` written by ``train_family``."""

from __future__ import annotations

from typing import Any

from ..concepts import EMOTIONS

SETUP_LABELS = {"a2e": "A2E", "a2mid2e": "A2Mid2E", "independent": "A2Mid2E (independent)", "joint": "A2Mid2E-Joint"}


def setup_of(name: str) -> str:
    return SETUP_LABELS.get(name.split("-")[0], name)


def target_table(results: dict[str, Any], names: list[str], split: str = "test") -> str:
    """Markdown: one row per model, Pearson r per target and the mean (the paper's table)."""
    first = results["models"][names[0]][split]["targets"]
    targets = sorted((t for t in first if t != "mean"), key=lambda t: (EMOTIONS.index(t) if t in EMOTIONS else 99, t))
    lines = ["| setup | model | " + " | ".join(targets) + " | mean |",
             "|---|---|" + "---|" * (len(targets) + 1)]
    for name in names:
        table = results["models"][name][split]["targets"]
        cells = [f"{table[t]['r']:.2f}" for t in targets] + [f"**{table['mean']['r']:.3f}**"]
        lines.append(f"| {setup_of(name)} | `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def concept_table(results: dict[str, Any], name: str, split: str = "test") -> str:
    """Markdown: Pearson r and R^2 per concept for one model."""
    table = results["models"][name][split]["concepts"]
    lines = ["| concept | r | R^2 |", "|---|---|---|"]
    lines += [f"| {c} | {v['r']:.3f} | {v['r2']:.3f} |" for c, v in table.items()]
    return "\n".join(lines)
