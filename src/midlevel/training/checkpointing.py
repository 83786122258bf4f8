"""Resumable training state: epoch-stamped weight files, then a small JSON that points at them.

Order of writes: model and optimizer tensors (each atomically, named by epoch), then
``state.json`` (atomically). A kill at any moment leaves ``state.json`` pointing at a complete
earlier epoch, so a resumed run repeats exactly what an uninterrupted one would have done.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..ioutil import atomic_path, atomic_write_text

STATE_FILE = "state.json"


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    sd = optimizer.state_dict()
    tensors = {f"{pid}.{key}": torch.as_tensor(val).detach().cpu().contiguous()
               for pid, state in sd["state"].items() for key, val in state.items()}
    return tensors, sd["param_groups"]


def save_training_state(out_dir: Path, epoch: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        state: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    model_file, optim_file = f"epoch-{epoch:04d}.model.safetensors", f"epoch-{epoch:04d}.optim.safetensors"
    with atomic_path(out_dir / model_file) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tensors, groups = _optimizer_tensors(optimizer)
    with atomic_path(out_dir / optim_file) as tmp:
        save_file(tensors, str(tmp))
    payload = dict(state, epoch=epoch, model_file=model_file, optim_file=optim_file, param_groups=groups)
    atomic_write_text(out_dir / STATE_FILE, json.dumps(payload, indent=1) + "\n")
    for old in out_dir.glob("epoch-*.safetensors"):  # keep only what state.json points at
        if old.name not in (model_file, optim_file):
            old.unlink(missing_ok=True)


def load_training_state(out_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict | None:
    """Restore model and optimizer from ``out_dir``; None when there is nothing to resume."""
    path = out_dir / STATE_FILE
    if not path.is_file():
        return None
    state = json.loads(path.read_text(encoding="utf-8"))
    model.load_state_dict(load_file(str(out_dir / state["model_file"])))
    tensors = load_file(str(out_dir / state["optim_file"]))
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, val in tensors.items():
        pid, name = key.split(".", 1)
        opt_state.setdefault(int(pid), {})[name] = val
    optimizer.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    return state
