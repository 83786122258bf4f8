"""The zoo's registry: typed entries for shipped checkpoints, pinned by sha256.

Weights live as package data in ``midlevel/zoo/weights/<name>/`` (``config.json`` +
``model.safetensors``), so a non-editable install loads them offline. The sha256 pinned here
is checked on load, independently of the one recorded in the folder's ``config.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path


@dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    backbone: str
    head: str
    concept_names: tuple[str, ...]
    target_names: tuple[str, ...]
    sample_rate: int
    sha256: str
    card: str
    explainable: bool = True

    @property
    def weights_dir(self) -> Path:
        return Path(str(resources.files("midlevel.zoo") / "weights" / self.name))


#: Shipped checkpoints by name. Empty until the training recipes have produced them.
REGISTRY: dict[str, ModelEntry] = {}

#: The model used when none is named (None: no trained checkpoint ships yet).
DEFAULT_MODEL: str | None = None
