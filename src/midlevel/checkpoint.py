"""Model folders without pickle: ``config.json`` + ``model.safetensors``, sha256-checked.

``config.json`` records the sha256 of the weight file it was saved with, so a changed,
truncated or swapped weight file is refused before a single tensor is read.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import ConfigError, ModelConfig
from .errors import MidlevelError
from .ioutil import atomic_path, atomic_write_text, sha256_file

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class ModelLoadError(MidlevelError, ValueError):
    """A model folder cannot be loaded; the message names the file and the reason."""


def save_model_dir(directory: str | Path, config: ModelConfig, state_dict: dict[str, torch.Tensor],
                   extra: dict[str, Any] | None = None) -> Path:
    """Write weights then config, each atomically; a new folder appears only when complete."""
    directory = Path(directory)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    if directory.exists():
        _write_files(directory, config, tensors, extra)
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        _write_files(staging, config, tensors, extra)
        os.chmod(staging, 0o755)  # mkdtemp's 0700 is for the staging name, not the result
        os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def _write_files(directory: Path, config: ModelConfig, tensors: dict[str, torch.Tensor],
                 extra: dict[str, Any] | None) -> None:
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        digest = sha256_file(tmp)
    payload = {"model": config.to_dict(), "weights_sha256": digest, **(extra or {})}
    atomic_write_text(directory / CONFIG_FILE, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_config(directory: str | Path) -> tuple[ModelConfig, dict[str, Any]]:
    """Parse ``config.json``; returns the model config and the whole JSON payload."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such file (is {directory} a model folder?)")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        return ModelConfig.from_dict(payload["model"]), payload
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path}: not valid JSON ({exc})") from None
    except KeyError as exc:
        raise ModelLoadError(f"{path}: missing field {exc}") from None
    except (ConfigError, TypeError, AttributeError) as exc:
        raise ModelLoadError(f"{path}: {exc}") from None


def read_weights(directory: str | Path, expected_sha256: str | None) -> dict[str, torch.Tensor]:
    """Load tensors after checking the file's sha256 against the expected digest."""
    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such file")
    if expected_sha256 is None:
        raise ModelLoadError(f"{path}: no sha256 recorded for the weights; refusing to load unchecked weights")
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise ModelLoadError(
            f"{path}: sha256 mismatch (expected {expected_sha256[:12]}..., file has {actual[:12]}...); "
            "the weights were changed, truncated or replaced"
        )
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: unreadable safetensors file ({exc})") from None
