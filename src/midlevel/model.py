"""TwoStageModel: waveform -> front-end -> backbone -> K named concepts -> additive head -> T targets.

Tracks longer than one window are cut into windows (10 s with a 5 s hop by default; the last
window is aligned to the end of the track so no audio is skipped). A track's concepts are the
mean of its windows' concepts and its targets are the head applied to those mean concepts, so
``targets == intercept + contributions.sum(concepts)`` holds exactly at the track level too.
Tracks shorter than one window are zero-padded to one window and flagged ``padded``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from .audio import Audio, is_silent, load_audio, pad_to_length
from .backbones import build_backbone
from .checkpoint import ModelLoadError, read_config, read_weights, save_model_dir
from .config import ConfigError, ModelConfig
from .explain.explanation import Explanation, Prediction
from .frontend import LogFrequencySpectrogram
from .heads import AdditiveHead, build_head
from .ioutil import release_freed_memory
from .numerics import flush_denormals


def stream_windows(samples: np.ndarray, window: int, hop: int, batch_size: int) -> Iterator[np.ndarray]:
    """(B, window) float32 batches covering the track (end-aligned last window, short tracks padded)."""
    samples, _ = pad_to_length(samples, window)
    starts = window_starts(len(samples), window, hop)
    for i in range(0, len(starts), batch_size):
        yield np.stack([samples[s:s + window] for s in starts[i:i + batch_size]])


def window_starts(n_samples: int, window: int, hop: int) -> list[int]:
    """Start sample of each window; the last one is end-aligned so the whole track is covered."""
    if n_samples <= window:
        return [0]
    starts = list(range(0, n_samples - window + 1, hop))
    if starts[-1] + window < n_samples:
        starts.append(n_samples - window)
    return starts


class AudioModel(nn.Module):
    """What every zoo model shares: config, front-end, backbone, windowing, persistence."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.frontend = LogFrequencySpectrogram(config.frontend)
        self.backbone = build_backbone(config.backbone, config.frontend)

    @property
    def name(self) -> str:
        return self.config.name or "unnamed model"

    def set_input_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-band statistics of the training data's log spectrograms, for every layer that needs them."""
        self.frontend.set_normalization(mean, std)
        if hasattr(self.backbone, "set_input_statistics"):
            self.backbone.set_input_statistics(mean, std)

    def read_audio(self, audio: Any, *, sample_rate: int | None = None) -> Audio:
        """Decode a path or array to mono float32 at the model's rate (see ``midlevel.audio``)."""
        if isinstance(audio, Audio):
            if audio.sample_rate == self.config.sample_rate:
                return audio
            return load_audio(audio.samples, self.config.sample_rate,
                              source_sample_rate=audio.sample_rate, name=audio.source)
        return load_audio(audio, self.config.sample_rate, source_sample_rate=sample_rate)

    def outputs_from_spectrogram(self, spec: torch.Tensor) -> torch.Tensor:
        """(B, 1, bands, frames) -> (B, D): what is averaged over a track's windows."""
        raise NotImplementedError

    @torch.inference_mode()
    def per_window(self, samples: np.ndarray, *, batch_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """``outputs_from_spectrogram`` for each window, (W, D), and window starts in seconds.

        Windows go through the network ``batch_size`` at a time, so memory does not grow with
        the track's length beyond the decoded audio itself.
        """
        window, hop = self.config.window_samples, self.config.hop_samples
        starts = window_starts(max(len(samples), window), window, hop)
        return self.outputs_per_window(samples, window, hop, batch_size=batch_size), \
            np.asarray(starts) / self.config.sample_rate

    @torch.inference_mode()
    @flush_denormals()
    def outputs_per_window(self, samples: np.ndarray, window: int, hop: int, *, batch_size: int = 8) -> np.ndarray:
        """``outputs_from_spectrogram`` of each window of any length and hop, (W, D), in eval mode."""
        was_training = self.training
        self.eval()
        try:
            out = []
            for batch in stream_windows(samples, window, hop, batch_size):
                out.append(self.outputs_from_spectrogram(self.frontend(torch.from_numpy(batch))).numpy())
                release_freed_memory()
        finally:
            self.train(was_training)
        return np.concatenate(out).astype(np.float64)

    def export_onnx(self, path: str | Path, *, opset: int | None = None) -> Path:
        """ONNX graph of the whole track path, windowing and head included (``midlevel.export``)."""
        from .export import export_onnx

        return export_onnx(self, path, opset=opset)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (atomically; sha256 recorded)."""
        return save_model_dir(directory, self.config, self.state_dict())

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, expected_sha256: str | None = None) -> "AudioModel":
        """Rebuild from a folder, refusing weights whose sha256 differs from the recorded one."""
        config, payload = read_config(directory)
        recorded = payload.get("weights_sha256")
        if expected_sha256 is not None and recorded != expected_sha256:
            raise ModelLoadError(f"{Path(directory) / 'config.json'}: records sha256 {recorded}, "
                                 f"but {expected_sha256} was expected")
        model_cls = MODEL_KINDS[config.kind]
        if not issubclass(model_cls, cls):
            raise ModelLoadError(f"{Path(directory) / 'config.json'}: holds a {config.kind} model, "
                                 f"not a {cls.__name__}")
        state = read_weights(directory, recorded)
        model = model_cls(config)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ModelLoadError(f"{Path(directory) / 'model.safetensors'}: does not match config.json "
                                 f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
        return model.eval()


class TwoStageModel(AudioModel):
    """An audio model whose every target is an exact sum of named concept contributions."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__(config or ModelConfig())
        cfg = self.config
        if cfg.kind != "two_stage":
            raise ConfigError(f"TwoStageModel needs kind='two_stage', got {cfg.kind!r}")
        self.concept_layer = nn.Linear(self.backbone.out_features, len(cfg.concept_names))
        with torch.no_grad():  # start predictions at the middle of the rating scale
            self.concept_layer.bias.fill_(sum(cfg.concept_scale) / 2)
        self.head: AdditiveHead = build_head(
            cfg.head, len(cfg.concept_names), len(cfg.target_names),
            concept_names=cfg.concept_names, target_names=cfg.target_names, **cfg.head_params,
        )

    # -- tensors in, tensors out (training, export) ------------------------------------------
    def concepts_from_spectrogram(self, spec: torch.Tensor) -> torch.Tensor:
        """(B, 1, bands, frames) normalised spectrogram -> (B, K) concepts in rating units."""
        return self.concept_layer(self.backbone(spec))

    def outputs_from_embedding(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.concept_layer(embedding)

    outputs_from_spectrogram = concepts_from_spectrogram

    def concepts_from_waveform(self, wave: torch.Tensor) -> torch.Tensor:
        return self.concepts_from_spectrogram(self.frontend(wave))

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, samples) -> concepts (B, K), targets (B, T), contributions (B, T, K)."""
        concepts = self.concepts_from_waveform(wave)
        contributions = self.head.contributions(concepts)
        targets = contributions.sum(dim=-1) + self.head.intercept
        return concepts, targets, contributions

    # -- audio in, results out ---------------------------------------------------------------
    def explain(self, audio: Any, *, sample_rate: int | None = None, batch_size: int = 8) -> Explanation:
        """Concepts, targets and each concept's exact contribution to each target."""
        clip = self.read_audio(audio, sample_rate=sample_rate)
        per_window, starts = self.per_window(clip.samples, batch_size=batch_size)
        concepts = per_window.mean(axis=0)
        with torch.inference_mode():
            c = torch.as_tensor(concepts[None], dtype=torch.float32)
            contributions = self.head.contributions(c)[0].double().numpy()
            intercept = self.head.intercept.double().numpy()
        notes = list(self.config.metadata.get("notes", []))
        return Explanation(
            source=clip.source, concept_names=list(self.config.concept_names),
            target_names=list(self.config.target_names), concepts=concepts,
            targets=contributions.sum(axis=1) + intercept, window_concepts=per_window,
            window_starts=starts, duration=clip.duration,
            padded=len(clip.samples) < self.config.window_samples, silent=is_silent(clip.samples),
            model_name=self.name, notes=notes, contributions=contributions, intercept=intercept,
        )

    def predict(self, audio: Any, *, sample_rate: int | None = None, batch_size: int = 8) -> Prediction:
        """Track-level concepts and targets (``explain`` without the decomposition)."""
        e = self.explain(audio, sample_rate=sample_rate, batch_size=batch_size)
        return Prediction(**{k: getattr(e, k) for k in Prediction.__dataclass_fields__})


class BlackBoxModel(AudioModel):
    """The A2E baseline: the same front-end and backbone, then a linear layer straight to targets.

    Kept for comparison (cost of interpretability) and for post-hoc explanation with SHAP; it
    has no concepts. A track's targets are the mean of its windows' targets.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        if config.kind != "black_box":
            raise ConfigError(f"BlackBoxModel needs kind='black_box', got {config.kind!r}")
        self.target_layer = nn.Linear(self.backbone.out_features, len(config.target_names))
        with torch.no_grad():
            self.target_layer.bias.fill_(sum(config.target_scale) / 2)

    def outputs_from_spectrogram(self, spec: torch.Tensor) -> torch.Tensor:
        return self.target_layer(self.backbone(spec))

    def outputs_from_embedding(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.target_layer(embedding)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> targets (B, T)."""
        return self.outputs_from_spectrogram(self.frontend(wave))

    def predict_targets(self, audio: Any, *, sample_rate: int | None = None, batch_size: int = 8) -> np.ndarray:
        clip = self.read_audio(audio, sample_rate=sample_rate)
        return self.per_window(clip.samples, batch_size=batch_size)[0].mean(axis=0)


MODEL_KINDS: dict[str, type[AudioModel]] = {"two_stage": TwoStageModel, "black_box": BlackBoxModel}
