"""Load models by name or folder; list what the zoo holds."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch

from ..checkpoint import ModelLoadError, read_config
from ..config import ModelConfig
from ..model import AudioModel, TwoStageModel
from .registry import DEFAULT_MODEL, REGISTRY, ModelEntry

UNTRAINED_NOTE = ("randomly initialised: the zoo has no trained checkpoint yet, "
                  "so these numbers show the mechanics, not music")


def list_models() -> list[str]:
    """Names of the shipped checkpoints."""
    return sorted(REGISTRY)


def get_entry(name: str) -> ModelEntry:
    try:
        return REGISTRY[name]
    except KeyError:
        available = ", ".join(list_models()) or "none yet"
        raise ModelLoadError(f"unknown model {name!r}: not a folder and not in the zoo (available: {available})") from None


def load(name_or_path: str | Path | None = None) -> AudioModel:
    """A model folder, a zoo name, or (None) the default model.

    Explainable entries give a ``TwoStageModel`` (``explain``); baselines a ``BlackBoxModel``.
    """
    if name_or_path is None:
        return default_model()
    path = Path(name_or_path)
    if path.is_dir():
        return AudioModel.from_pretrained(path)
    entry = get_entry(str(name_or_path))
    return AudioModel.from_pretrained(entry.weights_dir, expected_sha256=entry.sha256)


def weights_sha256(name_or_path: str | Path) -> str:
    """The sha256 of a model's weights as its folder or zoo entry records it (checked on load), so
    measurements can name the exact weights they were made on."""
    if Path(name_or_path).is_dir():
        return read_config(name_or_path)[1]["weights_sha256"]
    return get_entry(str(name_or_path)).sha256


def card(name: str) -> str:
    """The model card (Markdown with YAML front matter) of a zoo entry, from the installed package."""
    entry = get_entry(name)
    return (resources.files("midlevel.zoo") / "cards" / entry.card).read_text(encoding="utf-8")


def default_model() -> TwoStageModel:
    """The zoo's default model; until one ships, a seeded randomly initialised model, flagged so."""
    if DEFAULT_MODEL is not None:
        return load(DEFAULT_MODEL)
    torch.manual_seed(0)
    config = ModelConfig(name="untrained-compact-linear", metadata={"notes": [UNTRAINED_NOTE]})
    return TwoStageModel(config).eval()


__all__ = ["ModelEntry", "REGISTRY", "card", "default_model", "get_entry", "list_models", "load", "weights_sha256"]
