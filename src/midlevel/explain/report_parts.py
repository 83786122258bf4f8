"""What both formats of the HTML report share: the model card's summary, the target explained by default, tables."""

from __future__ import annotations

import html
import re
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..model import AudioModel


def table(frame: pd.DataFrame, *, index: bool = True) -> str:
    return frame.to_html(float_format=lambda v: f"{v:.3f}", index=index, border=0)


def choose_target(model: AudioModel, track_targets: np.ndarray) -> str:
    """The target furthest from the middle of its scale: the one the track says most about."""
    low, high = model.config.target_scale
    return model.config.target_names[int(np.argmax(np.abs(track_targets - (low + high) / 2)))]


def safe_stem(source: str) -> str:
    """A file-name-safe stem for a source ("<array>" -> "array")."""
    return re.sub(r"[^\w.-]+", "_", Path(source).stem).strip("_") or "audio"


def read_card(model: AudioModel, card: str | Path | None) -> tuple[dict[str, Any], str] | None:
    """(front matter, body) of the model's card, looked up as given, under ./model_cards, or in the package."""
    candidates = [Path(card)] if card else [Path("model_cards") / f"{model.name}.md",
                                             Path(str(resources.files("midlevel.zoo") / "cards" / f"{model.name}.md"))]
    for path in candidates:
        if path.is_file():
            from ..zoo.cards import split_front_matter  # needs PyYAML: only imported when a card exists

            return split_front_matter(path.read_text(encoding="utf-8"))
    return None


def markdown_section(body: str, title: str) -> str:
    """The text under the heading ``title`` (any level), up to the next heading."""
    lines, out, inside = body.splitlines(), [], False
    for line in lines:
        if line.startswith("#"):
            if inside:
                break
            inside = line.lstrip("#").strip().lower() == title.lower()
        elif inside:
            out.append(line)
    return "\n".join(out).strip()


def markdown_blocks(text: str) -> str:
    """Paragraphs and '-' lists as HTML (everything escaped); enough for a card's prose."""
    parts = []
    for block in (b.strip() for b in text.split("\n\n") if b.strip()):
        lines = block.splitlines()
        if all(line.lstrip().startswith(("- ", "* ")) for line in lines):
            items = "".join(f"<li>{html.escape(line.lstrip()[2:])}</li>" for line in lines)
            parts.append(f"<ul>{items}</ul>")
        else:
            parts.append(f"<p>{html.escape(' '.join(lines))}</p>")
    return "".join(parts)


def card_section(model: AudioModel, card: str | Path | None) -> str:
    found = read_card(model, card)
    if found is None:
        return f'<p class="note">No model card exists for {html.escape(model.name)}.</p>'
    meta, body = found
    intro = body.split("\n## ", 1)[0]
    intro = "\n".join(line for line in intro.splitlines() if not line.startswith("#"))
    facts = {k: meta[k] for k in ("license", "datasets", "tags") if k in meta}
    rows = [{"metric": m.get("name"), "value": m.get("value")}
            for entry in meta.get("model-index", []) for result in entry.get("results", [])
            for m in result.get("metrics", [])]
    parts = [markdown_blocks(intro)]
    parts += [f"<p><b>{html.escape(k)}</b>: {html.escape(str(v))}</p>" for k, v in facts.items()]
    if rows:
        parts.append(f"<details><summary>metrics</summary>{table(pd.DataFrame(rows), index=False)}</details>")
    limitations = markdown_section(body, "Limitations")
    parts.append("<h3>Limitations</h3>" + (markdown_blocks(limitations) or "<p>The card lists none.</p>"))
    return "".join(parts)
