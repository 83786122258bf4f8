"""How far a track is from what a model was calibrated on, so that extrapolation is flagged, not silent.

A model's numbers mean something only for audio like its training data; a square wave or white noise
still gets concepts and emotions. The track's mean embedding (the backbone's output averaged over its
windows: all the concept layer reads) is compared with a Gaussian fitted to the mean embeddings of
calibration clips, by Mahalanobis distance. The covariance is scikit-learn's Ledoit-Wolf estimate, whose
shrinkage keeps it invertible and well conditioned with fewer clips than dimensions. The threshold is a
percentile (99th by default) of the distances of clips like the training data, and the score is
distance / threshold: 1.0 is the threshold, and a prediction above it is flagged ``out_of_distribution``.

Fitting needs scikit-learn (the ``train`` extra) and happens once (``calibrate``; the script
``scripts/calibrate_ood.py``); ``ood.safetensors`` beside the weights holds the mean and precision matrix
as tensors and the rest as JSON in its metadata, and inference computes the distance with torch alone. A
folder without the file gets no score (None) and no flag. The file records the sha256 of the weights it
was calibrated for, and a folder whose weights differ refuses to load it: a calibration of other weights
would score the wrong embedding.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ._extras import require
from .errors import MidlevelError
from .ioutil import atomic_path
from .numerics import eval_mode, flush_denormals


OOD_FILE = "ood.safetensors"
OOD_FORMAT = 1
DEFAULT_PERCENTILE = 99.0


class OODCalibrationError(MidlevelError, ValueError):
    """Calibration cannot be done with what was given (too few clips, no clips, a wrong kind of input)."""


@dataclass(frozen=True)
class OODCalibration:
    """A Gaussian over calibration clips' mean embeddings, and the distance that counts as far from it."""

    mean: torch.Tensor  # (E,) float64
    precision: torch.Tensor  # (E, E) float64, the inverse of the Ledoit-Wolf covariance
    threshold: float  # distance at the calibration percentile; score 1.0
    metadata: dict[str, Any] = field(default_factory=dict)  # n_calibration, corpus, percentile, weights_sha256, ...

    @property
    def weights_sha256(self) -> str | None:
        return self.metadata.get("weights_sha256")

    def distance(self, embedding: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Mahalanobis distance of (..., E) embeddings from the calibration mean, (...) float64."""
        d = torch.as_tensor(embedding).detach().to("cpu", torch.float64) - self.mean
        return torch.einsum("...i,ij,...j->...", d, self.precision, d).clamp_min(0.0).sqrt()

    def score(self, embedding: torch.Tensor | np.ndarray) -> float:
        """Distance of one (E,) embedding over the threshold: above 1.0 is out of distribution."""
        return float(self.distance(embedding)) / self.threshold

    def save(self, directory: str | Path) -> Path:
        """Write ``directory/ood.safetensors`` atomically; returns its path."""
        path = Path(directory) / OOD_FILE
        meta = {"midlevel_ood_format": OOD_FORMAT, "threshold": self.threshold, **self.metadata}
        with atomic_path(path) as tmp:
            save_file({"mean": self.mean.contiguous(), "precision": self.precision.contiguous()}, str(tmp),
                      metadata={k: json.dumps(v) for k, v in meta.items()})
        return path


def load_ood(directory: str | Path, weights_sha256: str | None) -> OODCalibration | None:
    """``directory/ood.safetensors`` when there is one, checked against the folder's weights; else None."""
    from .checkpoint import ModelLoadError  # checkpoint imports config only; here to keep this module light

    path = Path(directory) / OOD_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = {k: json.loads(v) for k, v in (fh.metadata() or {}).items()}
            mean, precision = fh.get_tensor("mean").double(), fh.get_tensor("precision").double()
        threshold = float(meta.pop("threshold"))
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"{path}: not a readable out-of-distribution calibration ({exc})") from None
    if meta.get("weights_sha256") != weights_sha256:
        raise ModelLoadError(f"{path}: calibrated for weights {str(meta.get('weights_sha256'))[:12]}..., but the folder "
                             f"holds {str(weights_sha256)[:12]}...; recalibrate (scripts/calibrate_ood.py) or delete it")
    if mean.ndim != 1 or precision.shape != (len(mean), len(mean)) or not threshold > 0:
        raise ModelLoadError(f"{path}: inconsistent shapes {tuple(mean.shape)}, {tuple(precision.shape)} "
                             f"or threshold {threshold}")
    return OODCalibration(mean, precision, threshold, meta)


def sync_ood(directory: str | Path, ood: OODCalibration | None, weights_sha256: str) -> None:
    """After weights were written to ``directory``: save ``ood`` if it belongs to them, and remove a file
    left there for other weights (it would make the folder unloadable)."""
    path = Path(directory) / OOD_FILE
    if ood is not None and ood.weights_sha256 == weights_sha256:
        ood.save(directory)
        return
    if ood is not None:
        import warnings

        warnings.warn("the model's out-of-distribution calibration is for other weights (trained since?); "
                      f"not saved to {path}: recalibrate with scripts/calibrate_ood.py", stacklevel=3)
    if path.is_file():
        try:
            stale = load_ood(directory, weights_sha256) is None
        except MidlevelError:
            stale = True
        if stale:
            path.unlink()


@torch.inference_mode()
@flush_denormals()
def mean_embeddings(model: torch.nn.Module, clips: Any, *, sample_rate: int | None = None,
                    batch_size: int = 8) -> np.ndarray:
    """(N, E) float64: each clip's embedding averaged over its windows, as ``predict`` computes it.

    ``clips`` is a list of audio (paths, ``Audio``, arrays with ``sample_rate``), or one (N, bands, frames)
    array or tensor of un-normalised log spectrograms (``training.cache.cached_log_spectrograms``, a clip's
    first window: the whole clip for clips of one window, as in the controlled corpus)."""
    with eval_mode(model):
        if isinstance(clips, (np.ndarray, torch.Tensor)) and clips.ndim == 3:
            logspec = torch.as_tensor(clips)
            parts = [model.backbone(model.frontend.normalize(logspec[i:i + batch_size].float()))
                     for i in range(0, len(logspec), batch_size)]
            return torch.cat(parts).double().numpy() if parts else np.zeros((0, model.backbone.out_features))
        rows = []
        for clip in clips:
            audio = model.read_audio(clip, sample_rate=sample_rate)
            rows.append(model.track_embedding(audio.samples, batch_size))
        return np.stack(rows) if rows else np.zeros((0, model.backbone.out_features))


def fit(embeddings: np.ndarray, *, threshold_embeddings: np.ndarray | None = None,
        percentile: float = DEFAULT_PERCENTILE, metadata: dict[str, Any] | None = None) -> OODCalibration:
    """Ledoit-Wolf Gaussian of (N, E) ``embeddings``; the threshold is ``percentile`` of the distances of
    ``threshold_embeddings`` (held-out clips like them), or of ``embeddings`` themselves when None (in-sample
    distances are smaller, so that threshold flags more)."""
    sklearn_covariance = require("sklearn.covariance", "train", "out-of-distribution calibration")
    x = np.asarray(embeddings, dtype=np.float64)
    held = x if threshold_embeddings is None else np.asarray(threshold_embeddings, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2 or held.ndim != 2 or len(held) < 1 or held.shape[1] != x.shape[1]:
        raise OODCalibrationError(f"calibration needs at least 2 clips' embeddings (N, E) and threshold clips of "
                                  f"the same width; got {x.shape} and {held.shape}")
    if not 0 < percentile <= 100:
        raise OODCalibrationError(f"percentile must be in (0, 100], got {percentile}")
    lw = sklearn_covariance.LedoitWolf().fit(x)
    ood = OODCalibration(torch.from_numpy(lw.location_.copy()), torch.from_numpy(lw.get_precision().copy()), 1.0)
    threshold = float(np.percentile(ood.distance(held).numpy(), percentile))
    if not (math.isfinite(threshold) and threshold > 0):
        raise OODCalibrationError(f"the calibration clips' distances give no usable threshold ({threshold}); "
                                  "are the clips all identical?")
    meta = {"n_calibration": int(len(x)), "n_threshold": int(len(held)),
            "threshold_clips": "calibration" if threshold_embeddings is None else "held out",
            "percentile": float(percentile), "shrinkage": float(lw.shrinkage_), **(metadata or {})}
    return OODCalibration(ood.mean, ood.precision, threshold, meta)


def calibrate(model: torch.nn.Module, clips: Any, *, threshold_clips: Any = None, corpus: str = "",
              percentile: float = DEFAULT_PERCENTILE, sample_rate: int | None = None, batch_size: int = 8,
              metadata: dict[str, Any] | None = None) -> OODCalibration:
    """Fit ``model``'s out-of-distribution score on ``clips`` (see ``mean_embeddings`` for what they may be);
    ``threshold_clips`` (held-out clips of the same kind) set the threshold, else ``clips`` do. Set
    ``model.ood`` to the result to score predictions, and ``save_pretrained`` (or ``.save(folder)``) keeps it.
    ``metadata`` (JSON values) is stored with it."""
    from .checkpoint import weights_sha256  # the sha256 save_pretrained records, computed in memory

    if not isinstance(clips, (np.ndarray, torch.Tensor)):
        clips = list(clips)
    x = mean_embeddings(model, clips, sample_rate=sample_rate, batch_size=batch_size)
    held = None
    if threshold_clips is not None:
        held = mean_embeddings(model, threshold_clips if isinstance(threshold_clips, (np.ndarray, torch.Tensor))
                               else list(threshold_clips), sample_rate=sample_rate, batch_size=batch_size)
    meta = {"corpus": str(corpus), "model_name": model.name, **(metadata or {}),
            "weights_sha256": weights_sha256(model)}
    return fit(x, threshold_embeddings=held, percentile=percentile, metadata=meta)


def describe(ood: OODCalibration, score: float) -> str:
    """The note of a flagged prediction."""
    corpus = ood.metadata.get("corpus") or "the calibration corpus"
    return (f"out of distribution: {score:.2f} x the distance that {100 - ood.metadata.get('percentile', 99):g} % of "
            f"{corpus}'s clips exceed; the values are an extrapolation")


__all__ = ["OOD_FILE", "OODCalibration", "OODCalibrationError", "calibrate", "fit", "load_ood", "mean_embeddings"]
