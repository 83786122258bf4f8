"""Model folders without pickle: ``config.json`` + ``model.safetensors``, sha256-checked.

``config.json`` records the sha256 of the weight file it was saved with, so a changed,
truncated or swapped weight file is refused before a single tensor is read.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from safetensors.torch import save as safetensors_bytes

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
    if not Path(directory).is_dir():
        raise ModelLoadError(f"{directory}: no such folder" if not Path(directory).exists()
                             else f"{directory}: is a file, not a model folder (config.json + model.safetensors)")
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such file (is {directory} a model folder?)")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(payload, dict) or not isinstance(payload.get("model", {}), dict):
            raise ModelLoadError(f"{path}: expected an object with a 'model' object")
        config = ModelConfig.from_dict(payload["model"])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: not valid JSON ({exc})") from None
    except KeyError as exc:
        raise ModelLoadError(f"{path}: missing field {exc}") from None
    except (ConfigError, TypeError, AttributeError) as exc:
        raise ModelLoadError(f"{path}: {exc}") from None
    _check_parts(path, config)
    _check_against_weights(path, config)
    return config, payload


def _check_parts(config_path: Path, config: ModelConfig) -> None:
    """The backbone, head and head parameters a config names exist (``ModelConfig`` checks only the
    fields' kinds and values: the registries import it)."""
    from .backbones import BACKBONES
    from .heads import HEADS

    problem = None
    if config.backbone not in BACKBONES:
        problem = f"backbone: unknown backbone {config.backbone!r}; choose from {sorted(BACKBONES)}"
    elif config.kind == "two_stage" and config.head not in HEADS:
        problem = f"head: unknown head type {config.head!r}; choose from {sorted(HEADS)}"
    elif config.kind == "two_stage":
        params = list(inspect.signature(HEADS[config.head]).parameters.values())[2:]  # after the two counts
        accepted = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        accepted -= {"concept_names", "target_names"}  # given by the model
        unknown = sorted(set(config.head_params) - accepted)
        if unknown:
            problem = (f"head_params: {unknown} are not parameters of the {config.head!r} head (it takes "
                       f"{sorted(accepted)})")
    if problem:
        raise ModelLoadError(f"{config_path}: {problem}")


#: (field of the config, tensor whose first dimension has one row per name, what the rows are)
_NAMED_ROWS = {"two_stage": (("concept_names", "concept_layer.weight", "concept layer"),
                             ("target_names", "head.bias", "head")),
               "black_box": (("target_names", "target_layer.weight", "output layer"),)}


def _check_against_weights(config_path: Path, config: ModelConfig) -> None:
    """A config naming another number of concepts or targets than its weights hold, refused by field (reads
    the weight file's header only; anything else that does not fit is found when the tensors are loaded)."""
    weights = config_path.with_name(WEIGHTS_FILE)
    if not weights.is_file():
        return  # read_weights says so
    try:
        with safe_open(str(weights), framework="pt") as fh:
            shapes = {k: fh.get_slice(k).get_shape() for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{weights}: unreadable safetensors file ({exc})") from None
    for field_name, tensor, what in _NAMED_ROWS.get(config.kind, ()):
        names = getattr(config, field_name)
        if tensor in shapes and shapes[tensor] and shapes[tensor][0] != len(names):
            raise ModelLoadError(f"{config_path}: {field_name} lists {len(names)} name(s), but the {what} in "
                                 f"{weights.name} has {shapes[tensor][0]}; the config and the weights are of "
                                 "different models")


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


_SIZE_MISMATCH = re.compile(r"size mismatch for (\S+): copying a param with shape torch\.Size\(\[(.*?)\]\) from "
                            r"checkpoint, the shape in current model is torch\.Size\(\[(.*?)\]\)")


def state_dict_mismatch(directory: str | Path, exc: RuntimeError) -> ModelLoadError | None:
    """torch's ``load_state_dict`` error (weights that do not fit the model config.json builds) as one line
    naming the files, the first tensor and the fields to check; None for any other RuntimeError."""
    text = str(exc)
    if "Error(s) in loading state_dict" not in text:
        return None
    found = _SIZE_MISMATCH.search(text)
    detail = (f"{found[1]} is [{found[2]}] in the file but [{found[3]}] for the config" if found
              else text.splitlines()[-1].strip())
    return ModelLoadError(f"{Path(directory) / WEIGHTS_FILE}: does not fit {CONFIG_FILE} ({detail}; check its "
                          "backbone and frontend fields)")


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 of the weights as ``save_pretrained`` writes them, i.e. config.json's record (in memory)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return hashlib.sha256(safetensors_bytes(tensors, metadata={"format": "pt"})).hexdigest()
