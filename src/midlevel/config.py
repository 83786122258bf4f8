"""The single description of a model: serialised to ``config.json`` beside the weights.

A config names the architecture (front-end, backbone, head), the concepts (names, order,
rating scale) and the targets, and how long tracks are windowed. Building a model from a
config and loading the matching ``model.safetensors`` reproduces it exactly.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

from .concepts import EMOTION_SCALE, EMOTIONS, MIDLEVEL_FEATURES, MIDLEVEL_SCALE
from .errors import MidlevelError

CONFIG_VERSION = 1
TASKS = ("regression", "classification")
#: the heads whose outputs are class logits (``heads.logistic.LogitHead``); a classifier's two-stage head
CLASSIFICATION_HEADS = ("logistic", "gam_logistic")


class ConfigError(MidlevelError, ValueError):
    """A config (or config.json) is malformed; the message names the field."""


@dataclass
class FrontendConfig:
    """Waveform -> log-frequency spectrogram, defaulting to the 2019 paper's input.

    22050 Hz mono, 2048-sample frames, hop 704 (31.3 frames/s), a logarithmic triangular
    filterbank with 24 bands per octave from 20 Hz up to ``fmax`` (16 kHz asked; bands above
    Nyquist, 11.025 kHz, are dropped as madmom does, giving 149 bins), log10(1 + magnitude).
    """

    sample_rate: int = 22050
    n_fft: int = 2048
    hop_length: int = 704
    bands_per_octave: int = 24
    fmin: float = 20.0
    fmax: float = 16000.0
    #: per-window level normalisation: each window is scaled to this RMS level (dBFS) before the STFT, so
    #: the file's gain cannot reach the concepts (None: off, as in the models trained before it). Windows
    #: quieter than ``level_floor_dbfs`` are raised only as far as a window at the floor would be, so
    #: near-silence stays quiet instead of becoming amplified noise.
    level_target_dbfs: float | None = None
    level_floor_dbfs: float = -70.0
    #: "log_spectrogram" (the above), or "waveform": the level-normalised samples themselves, one "band" and
    #: one frame per sample (``hop_length`` 1; ``n_fft`` and the filterbank unused), for raw-waveform
    #: backbones such as Becker et al.'s AudioNet (``backbones.RawWaveformBackbone``)
    representation: str = "log_spectrogram"


@dataclass
class ModelConfig:
    """Everything needed to rebuild a two-stage model (weights aside)."""

    #: "two_stage" (audio -> concepts -> additive head) or "black_box" (audio -> targets, the A2E baseline)
    kind: str = "two_stage"
    backbone: str = "compact"
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    concept_names: list[str] = field(default_factory=lambda: list(MIDLEVEL_FEATURES))
    concept_scale: tuple[float, float] = MIDLEVEL_SCALE
    target_names: list[str] = field(default_factory=lambda: list(EMOTIONS))
    target_scale: tuple[float, float] = EMOTION_SCALE
    head: str = "linear"
    head_params: dict[str, Any] = field(default_factory=dict)
    #: "regression" (targets are ratings on ``target_scale``) or "classification" (targets are one logit per
    #: class named in ``target_names``; a two-stage classifier has a logit-space head: "logistic" or
    #: "gam_logistic"; ``target_scale`` is then unused)
    task: str = "regression"
    window_seconds: float = 10.0
    hop_seconds: float = 5.0
    name: str = ""
    description: str = ""
    #: free-form provenance (recipe, seed, data); not used to build the model
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_types(self)  # before the conversions below, which would turn "abc" into ['a', 'b', 'c']
        self.concept_scale = tuple(float(v) for v in self.concept_scale)  # type: ignore[assignment]
        self.target_scale = tuple(float(v) for v in self.target_scale)  # type: ignore[assignment]
        self.concept_names = [str(n) for n in self.concept_names]
        self.target_names = [str(n) for n in self.target_names]
        self.validate()

    def validate(self) -> None:
        if self.kind not in ("two_stage", "black_box"):
            raise ConfigError(f"kind must be 'two_stage' or 'black_box'; got {self.kind!r}")
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {', '.join(repr(t) for t in TASKS)}; got {self.task!r}")
        if self.kind == "two_stage" and (self.task == "classification") != (self.head in CLASSIFICATION_HEADS):
            raise ConfigError(f"head {self.head!r} does not fit task {self.task!r}: a classifier's head is one of "
                              f"{', '.join(CLASSIFICATION_HEADS)} (logits), a regression's is not")
        if self.task == "classification" and len(self.target_names) < 2:
            raise ConfigError("a classifier needs at least two classes in target_names")
        for what, names in (("concept_names", self.concept_names), ("target_names", self.target_names)):
            if not names:
                raise ConfigError(f"{what} must not be empty")
            if len(set(names)) != len(names):
                raise ConfigError(f"{what} has duplicates: {names}")
        for what, scale in (("concept_scale", self.concept_scale), ("target_scale", self.target_scale)):
            if len(scale) != 2 or not scale[0] < scale[1]:
                raise ConfigError(f"{what} must be (low, high) with low < high; got {scale}")
        if self.window_seconds <= 0 or self.hop_seconds <= 0:
            raise ConfigError("window_seconds and hop_seconds must be positive")
        if self.frontend.sample_rate <= 0:
            raise ConfigError("frontend.sample_rate must be positive")
        if self.frontend.representation not in ("log_spectrogram", "waveform"):
            raise ConfigError(f"frontend.representation must be 'log_spectrogram' or 'waveform'; "
                              f"got {self.frontend.representation!r}")
        if self.frontend.representation == "waveform" and self.frontend.hop_length != 1:
            raise ConfigError("a waveform front-end has one frame per sample: frontend.hop_length must be 1")

    @property
    def sample_rate(self) -> int:
        return self.frontend.sample_rate

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate))

    @property
    def hop_samples(self) -> int:
        """Samples from one window's start to the next: ``hop_seconds`` rounded to a whole number of the
        front-end's frames (at least one), so that overlapping windows share their STFT frames and inference
        computes each once (``frontend.window_spectrograms``); 5 s at 22.05 kHz is 157 frames of 704, 5.013 s."""
        frame = self.frontend.hop_length
        return max(1, int(round(self.hop_seconds * self.sample_rate / frame))) * frame

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["concept_scale"] = list(self.concept_scale)
        data["target_scale"] = list(self.target_scale)
        data["config_version"] = CONFIG_VERSION
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        data = dict(data)
        version = data.pop("config_version", CONFIG_VERSION)
        if version != CONFIG_VERSION:
            raise ConfigError(f"config_version {version} is not supported (expected {CONFIG_VERSION})")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
        frontend = data.pop("frontend", {})
        fe_known = {f.name for f in dataclasses.fields(FrontendConfig)}
        if not isinstance(frontend, dict):
            raise ConfigError(f"frontend must be an object of front-end settings; got {_shown(frontend)}")
        if set(frontend) - fe_known:
            raise ConfigError(f"frontend: unknown field(s) {sorted(set(frontend) - fe_known)}")
        try:
            return cls(frontend=FrontendConfig(**frontend), **data)
        except TypeError as exc:  # wrong types inside fields
            raise ConfigError(str(exc)) from None


def _is_number(value: Any, *, whole: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return not whole or (math.isfinite(value) and value == int(value))


def _is_sequence(value: Any) -> bool:
    """A list or tuple (as JSON gives), or a 1-D array or index (as code may pass)."""
    return isinstance(value, (list, tuple)) or (hasattr(value, "__array__") and getattr(value, "ndim", 0) == 1)


def _shown(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _check_types(config: ModelConfig) -> None:
    """Each field of the JSON kind it must have, refused by name ("window_seconds must be a number; got
    '10' (str)") before any comparison meets a wrong type."""
    fe = config.frontend
    if not isinstance(fe, FrontendConfig):
        raise ConfigError(f"frontend must be a FrontendConfig (an object in config.json); got {_shown(fe)}")
    fields = [(f"frontend.{f.name}", getattr(fe, f.name)) for f in dataclasses.fields(FrontendConfig)]
    fields += [(f.name, getattr(config, f.name)) for f in dataclasses.fields(ModelConfig) if f.name != "frontend"]
    for name, value in fields:
        kind = _FIELD_KINDS.get(name.removeprefix("frontend."), "number")
        if kind == "number|null" and value is None:
            continue
        ok = {"number": _is_number, "number|null": _is_number,
              "whole number": lambda v: _is_number(v, whole=True),
              "string": lambda v: isinstance(v, str),
              "list of strings": lambda v: _is_sequence(v) and all(isinstance(n, str) for n in v),
              "pair of numbers": lambda v: _is_sequence(v) and all(_is_number(n) for n in v),
              "mapping": lambda v: isinstance(v, dict)}[kind](value)
        if not ok:
            raise ConfigError(f"{name} must be a {kind.replace('|null', ' or null')}; got {_shown(value)}")


#: what each field holds (unlisted fields: numbers); frontend fields by their own names
_FIELD_KINDS = {
    "sample_rate": "whole number", "n_fft": "whole number", "hop_length": "whole number",
    "bands_per_octave": "whole number", "level_target_dbfs": "number|null", "representation": "string",
    "kind": "string", "backbone": "string", "head": "string", "task": "string", "name": "string", "description": "string",
    "concept_names": "list of strings", "target_names": "list of strings",
    "concept_scale": "pair of numbers", "target_scale": "pair of numbers",
    "head_params": "mapping", "metadata": "mapping",
}
