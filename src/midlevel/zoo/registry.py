"""The zoo's registry: typed entries for shipped checkpoints, pinned by sha256.

Weights live as package data in ``midlevel/zoo/weights/<name>/`` (``config.json`` +
``model.safetensors``), so a non-editable install loads them offline. ``registry.json`` beside
this file is written by ``scripts/build_zoo.py`` (never by hand); the sha256 pinned there is
checked on load, independently of the one recorded in the folder's ``config.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path

REGISTRY_FILE = "registry.json"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    backbone: str
    head: str  # "linear", "gam", or "none" for black-box baselines
    setup: str  # "A2Mid2E", "A2Mid2E-Joint", "A2E"
    concept_names: tuple[str, ...]
    target_names: tuple[str, ...]
    sample_rate: int
    sha256: str
    card: str  # file name under model_cards/ (also shipped in midlevel/zoo/cards/)
    explainable: bool = True

    @property
    def weights_dir(self) -> Path:
        return Path(str(resources.files("midlevel.zoo") / "weights" / self.name))


def read_registry() -> tuple[dict[str, ModelEntry], str | None]:
    """Entries by name and the default model's name, from the shipped ``registry.json``."""
    source = resources.files("midlevel.zoo") / REGISTRY_FILE
    if not source.is_file():
        return {}, None
    data = json.loads(source.read_text(encoding="utf-8"))
    names = {f.name for f in fields(ModelEntry)}
    entries = {}
    for raw in data["models"]:
        raw = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in names}
        entries[raw["name"]] = ModelEntry(**raw)
    return entries, data.get("default")


#: Shipped checkpoints by name, and the model used when none is named.
REGISTRY, DEFAULT_MODEL = read_registry()
