"""Load models by name or folder; list and describe what the zoo holds.

Names and paths never shadow each other: a ``pathlib.Path``, or a string with a path separator
(``./my-model``, ``runs/x/models/joint-linear``), is a folder; a bare string is a zoo name (or a
deprecated alias), and a folder is only taken for a bare string the zoo does not know. A bare string
that is both a zoo name and a folder in the working directory is refused as ambiguous, with the two
ways to say which (``./NAME`` or ``zoo:NAME``).
"""

from __future__ import annotations

import difflib
import os
import warnings
from importlib import resources
from pathlib import Path

import torch

from ..checkpoint import ModelLoadError, read_config, state_dict_mismatch
from ..config import ModelConfig
from ..model import AudioModel, TwoStageModel
from .registry import ALIASES, DEFAULT_MODEL, DEFAULTS, REGISTRY, ModelEntry, task_score

UNTRAINED_NOTE = ("randomly initialised: the zoo has no trained checkpoint yet, "
                  "so these numbers show the mechanics, not music")
ZOO_PREFIX = "zoo:"
STATUS_ORDER = {"current": 0, "baseline": 1, "superseded": 2}


class ZooNameWarning(FutureWarning):
    """A deprecated name was used, or a superseded entry was replaced by its successor.

    A ``FutureWarning`` so that end users see it by default (``DeprecationWarning`` is hidden
    outside ``__main__``)."""


def list_models(*, all: bool = False) -> list[str]:  # noqa: A002 - mirrors ``midlevel models --all``
    """Names of the installed entries: music emotion first, then the other tasks; within a task its default,
    the current entries, then baselines, best recorded score first; ``all=True`` adds the superseded
    entries, which are listed but not installed."""
    tasks = list(DEFAULTS)
    entries = [e for e in REGISTRY.values() if all or e.shipped]
    entries.sort(key=lambda e: (tasks.index(e.task) if e.task in tasks else len(tasks), e.name != DEFAULTS.get(e.task),
                                STATUS_ORDER.get(e.status, 3), -task_score(e), e.name))
    return [e.name for e in entries]


def _suggest(name: str) -> str:
    known = list(REGISTRY) + list(ALIASES)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def get_entry(name: str) -> ModelEntry:
    """The registry entry of a zoo name or deprecated alias (warning with the current name)."""
    name = name.removeprefix(ZOO_PREFIX)
    if name in REGISTRY:
        return REGISTRY[name]
    if name in ALIASES:
        new = ALIASES[name]
        warnings.warn(f"model name {name!r} is deprecated; it is now {new!r}", ZooNameWarning, stacklevel=3)
        return REGISTRY[new]
    available = ", ".join(list_models()) or "none yet"
    raise ModelLoadError(f"unknown model {name!r}: not a model folder and not in the zoo{_suggest(name)} "
                         f"(installed: {available}; `midlevel models --all` lists every entry)")


def _looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or (os.altsep is not None and os.altsep in text) \
        or text.startswith(("~", "."))


def resolve(name_or_path: str | Path) -> Path | ModelEntry:
    """A model folder (``Path``) or a zoo entry, by the rules in this module's docstring."""
    if isinstance(name_or_path, Path):
        return name_or_path
    text = str(name_or_path)
    if text.startswith(ZOO_PREFIX):
        return get_entry(text)
    if _looks_like_path(text):
        return Path(text).expanduser()
    known = text in REGISTRY or text in ALIASES
    if known and Path(text).exists():
        raise ModelLoadError(f"{text!r} is both a zoo entry and a folder in {Path.cwd()}; write ./{text} for the "
                             f"folder or {ZOO_PREFIX}{text} for the zoo entry")
    if not known and Path(text).is_dir():
        return Path(text)
    return get_entry(text)


def installed_entry(entry: ModelEntry, *, replace_superseded: bool = True) -> ModelEntry:
    """``entry`` itself when its weights are installed; else (superseded entries leave the wheel) the
    entry that superseded it, with a warning, or a refusal when ``replace_superseded`` is False (e.g. to
    continue training exactly those weights)."""
    seen = [entry.name]
    while not entry.shipped:
        how = ("rebuild it from the manifest with `python scripts/build_zoo.py --entry "
               f"{seen[0]} --train` in a clone of the repository")
        if not replace_superseded or entry.superseded_by is None:
            successor = f" by {entry.superseded_by!r}" if entry.superseded_by else ""
            raise ModelLoadError(f"zoo entry {seen[0]!r} is {entry.status}{successor} and no longer installed: "
                                 f"use {entry.superseded_by or 'another entry'}, or {how}")
        entry = REGISTRY[entry.superseded_by]
        seen.append(entry.name)
    if len(seen) > 1:
        warnings.warn(f"zoo entry {seen[0]!r} is superseded and no longer installed; loading {entry.name!r} "
                      f"instead (other weights: see `midlevel models --all`)", ZooNameWarning, stacklevel=3)
    return entry


def load(name_or_path: str | Path | None = None, *, replace_superseded: bool = True) -> AudioModel:
    """A model folder, a zoo name, or (None) the default model.

    Explainable entries give a ``TwoStageModel`` (``explain``); baselines a ``BlackBoxModel``
    (``predict`` only). A deprecated name loads its entry with a ``ZooNameWarning``; a superseded
    entry that is no longer installed loads its successor with a warning, or is refused when
    ``replace_superseded=False``.
    """
    if name_or_path is None:
        return default_model()
    target = resolve(name_or_path)
    if isinstance(target, Path):
        return _from_pretrained(target)
    entry = installed_entry(target, replace_superseded=replace_superseded)
    model = _from_pretrained(entry.weights_dir, expected_sha256=entry.sha256)
    if entry.twin:
        model.config.metadata["explainable_twin"] = entry.twin
    return model


def _from_pretrained(directory: Path, **kwargs) -> AudioModel:
    """``AudioModel.from_pretrained``, with weights that do not fit their config refused in one line."""
    try:
        return AudioModel.from_pretrained(directory, **kwargs)
    except RuntimeError as exc:
        if (refusal := state_dict_mismatch(directory, exc)) is None:
            raise
        raise refusal from None


def weights_sha256(name_or_path: str | Path) -> str:
    """The sha256 of a model's weights as its folder or zoo entry records it (checked on load), so
    measurements can name the exact weights they were made on."""
    target = resolve(name_or_path)
    if isinstance(target, Path):
        return read_config(target)[1]["weights_sha256"]
    return target.sha256


def card(name: str) -> str:
    """The model card (Markdown with YAML front matter) of a zoo entry, from the installed package
    (every entry's card ships, superseded ones included)."""
    entry = get_entry(name)
    return (resources.files("midlevel.zoo") / "cards" / entry.card).read_text(encoding="utf-8")


def default_model() -> TwoStageModel:
    """The zoo's default model; until one ships, a seeded randomly initialised model, flagged so."""
    if DEFAULT_MODEL is not None:
        return load(DEFAULT_MODEL)
    torch.manual_seed(0)
    config = ModelConfig(name="untrained-compact-linear", metadata={"notes": [UNTRAINED_NOTE]})
    return TwoStageModel(config).eval()


__all__ = ["ALIASES", "DEFAULT_MODEL", "DEFAULTS", "ModelEntry", "REGISTRY", "ZooNameWarning", "card", "default_model",
           "get_entry", "installed_entry", "list_models", "load", "resolve", "weights_sha256"]
