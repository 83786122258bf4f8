"""TwoStageModel: waveform -> front-end -> backbone -> K named concepts -> additive head -> T targets.

Tracks longer than one window are cut into windows (10 s with a 5 s hop by default; the last
window is aligned to the end of the track so no audio is skipped). A track's concepts are the
mean of its windows' concepts and its targets are the head applied to those mean concepts, so
``targets == intercept + contributions.sum(concepts)`` holds exactly at the track level too.
Tracks shorter than one window are zero-padded to one window and flagged ``padded``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .audio import Audio, is_silent, load_audio, pad_to_length
from .backbones import build_backbone
from .checkpoint import ModelLoadError, read_config, read_weights, save_model_dir
from .config import ModelConfig
from .explain.explanation import Explanation, Prediction
from .frontend import LogFrequencySpectrogram
from .heads import AdditiveHead, build_head


def window_starts(n_samples: int, window: int, hop: int) -> list[int]:
    """Start sample of each window; the last one is end-aligned so the whole track is covered."""
    if n_samples <= window:
        return [0]
    starts = list(range(0, n_samples - window + 1, hop))
    if starts[-1] + window < n_samples:
        starts.append(n_samples - window)
    return starts


class TwoStageModel(nn.Module):
    """An audio model whose every target is an exact sum of named concept contributions."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        cfg = self.config
        self.frontend = LogFrequencySpectrogram(cfg.frontend)
        self.backbone = build_backbone(cfg.backbone)
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

    def concepts_from_waveform(self, wave: torch.Tensor) -> torch.Tensor:
        return self.concepts_from_spectrogram(self.frontend(wave))

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, samples) -> concepts (B, K), targets (B, T), contributions (B, T, K)."""
        concepts = self.concepts_from_waveform(wave)
        contributions = self.head.contributions(concepts)
        targets = contributions.sum(dim=-1) + self.head.intercept
        return concepts, targets, contributions

    # -- audio in, results out ---------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.config.name or "unnamed model"

    def read_audio(self, audio: Any, *, sample_rate: int | None = None) -> Audio:
        """Decode a path or array to mono float32 at the model's rate (see ``midlevel.audio``)."""
        if isinstance(audio, Audio):
            if audio.sample_rate == self.config.sample_rate:
                return audio
            return load_audio(audio.samples, self.config.sample_rate,
                              source_sample_rate=audio.sample_rate, name=audio.source)
        return load_audio(audio, self.config.sample_rate, source_sample_rate=sample_rate)

    @torch.inference_mode()
    def window_concepts(self, samples: np.ndarray, *, batch_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """Concepts per window, (W, K), and window start times in seconds, batch by batch."""
        window, hop = self.config.window_samples, self.config.hop_samples
        samples, _ = pad_to_length(samples, window)
        starts = window_starts(len(samples), window, hop)
        was_training = self.training
        self.eval()
        try:
            out = []
            for i in range(0, len(starts), batch_size):
                batch = np.stack([samples[s:s + window] for s in starts[i:i + batch_size]])
                out.append(self.concepts_from_waveform(torch.from_numpy(batch)).numpy())
        finally:
            self.train(was_training)
        return np.concatenate(out).astype(np.float64), np.asarray(starts) / self.config.sample_rate

    def explain(self, audio: Any, *, sample_rate: int | None = None, batch_size: int = 8) -> Explanation:
        """Concepts, targets and each concept's exact contribution to each target."""
        clip = self.read_audio(audio, sample_rate=sample_rate)
        per_window, starts = self.window_concepts(clip.samples, batch_size=batch_size)
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

    # -- persistence -------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (atomically; sha256 recorded)."""
        return save_model_dir(directory, self.config, self.state_dict())

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, expected_sha256: str | None = None) -> "TwoStageModel":
        """Rebuild from a folder, refusing weights whose sha256 differs from the recorded one."""
        config, payload = read_config(directory)
        recorded = payload.get("weights_sha256")
        if expected_sha256 is not None and recorded != expected_sha256:
            raise ModelLoadError(f"{Path(directory) / 'config.json'}: records sha256 {recorded}, "
                                 f"but {expected_sha256} was expected")
        state = read_weights(directory, recorded)
        model = cls(config)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ModelLoadError(f"{Path(directory) / 'model.safetensors'}: does not match config.json "
                                 f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
        return model.eval()
