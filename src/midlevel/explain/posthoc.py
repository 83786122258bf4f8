"""Post-hoc maps for any model's outputs: black-box targets, or a two-stage model's concepts.

These approximate what a two-stage model gives exactly at its concept layer; they are here to
compare with the literature and to explain the A2E black box. Every method runs through
captum on the normalised spectrogram, window by window, and is stitched into track maps the
same way as ``attribution`` (so the plots and the report are shared):

* ``occlusion``: output drop when a time-frequency patch is replaced by silence.
* ``saliency``: absolute gradient (gradient sensitivity).
* ``grad_cam``: Grad-CAM on the last convolution block's output, upsampled to the input grid.
* ``deeplift``: DeepLIFT (rescale rule) from the silence baseline.
* ``lrp``: layer-wise relevance propagation, epsilon rule. captum 0.9 has rules for Conv2d,
  BatchNorm2d, MaxPool2d, AdaptiveAvgPool2d, Linear and passes ReLU/Dropout through; it has
  none for ``Flatten`` (so ``SpectrogramNet`` flattens functionally) nor for additive heads
  (so a two-stage model's *targets* get LRP maps only via ``attribution.target_maps``).
* ``lime``: LIME over a grid of time-frequency segments (audioLIME-style interpretable
  components), each switched between the sound and silence.
* ``integrated_gradients`` and ``gradient_x_input`` from ``attribution``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from ..model import AudioModel, TwoStageModel
from .attribution import METHODS, AttributeFn, AttributionMaps, SpectrogramNet, captum_attr, track_maps


def occlusion(net: nn.Module, spec: torch.Tensor, baseline: torch.Tensor, index: int, *,
              patch: tuple[int, int] = (16, 32), stride: tuple[int, int] | None = None) -> torch.Tensor:
    """Output minus output with a (bands, frames) patch silenced; default half-octave x 1 s tiles."""
    stride = stride or patch
    return captum_attr().Occlusion(net).attribute(spec, sliding_window_shapes=(1, *patch), strides=(1, *stride),
                                    baselines=baseline, target=index, perturbations_per_eval=16)


def saliency(net: nn.Module, spec: torch.Tensor, baseline: torch.Tensor, index: int) -> torch.Tensor:
    """|d output / d input| (Simonyan et al. 2014); the baseline is not used."""
    return captum_attr().Saliency(net).attribute(spec.clone().requires_grad_(), target=index, abs=True)


def last_conv_block(net: SpectrogramNet) -> nn.Module:
    """The last backbone child holding a convolution: Grad-CAM's layer (its output is post-ReLU).

    In a backbone with branches the convolutions are those of its CNN branch (``cnn``).
    """
    cnn = getattr(net.backbone, "cnn", net.backbone)
    blocks = [m for m in cnn.children() if any(isinstance(c, nn.Conv2d) for c in m.modules())]
    if not blocks:
        raise ValueError("the backbone has no convolution for Grad-CAM")
    return blocks[-1]


def grad_cam(net: SpectrogramNet, spec: torch.Tensor, baseline: torch.Tensor, index: int) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) on the last convolution block, bilinearly upsampled."""
    attr = captum_attr()
    cam = attr.LayerGradCam(net, last_conv_block(net)).attribute(spec, target=index, relu_attributions=True)
    return attr.LayerAttribution.interpolate(cam, tuple(spec.shape[-2:]), interpolate_mode="bilinear")


def deeplift(net: nn.Module, spec: torch.Tensor, baseline: torch.Tensor, index: int) -> torch.Tensor:
    """DeepLIFT rescale rule from silence: sums to output - silence output."""
    with warnings.catch_warnings():  # captum announces its temporary hooks on every call
        warnings.filterwarnings("ignore", message="Setting forward, backward hooks")
        return captum_attr().DeepLift(net).attribute(spec.clone().requires_grad_(), baselines=baseline, target=index)


def lrp_blockers(net: nn.Module) -> list[str]:
    """Leaf layers for which captum's LRP has no rule (empty: LRP applies)."""
    captum_attr()
    from captum.attr._core.lrp import SUPPORTED_LAYERS_WITH_RULES, SUPPORTED_NON_LINEAR_LAYERS

    supported = (*SUPPORTED_LAYERS_WITH_RULES, *SUPPORTED_NON_LINEAR_LAYERS)
    leaves = [m for m in net.modules() if not list(m.children())]
    return sorted({type(m).__name__ for m in leaves if type(m) not in supported and not hasattr(m, "rule")})


def lrp(net: nn.Module, spec: torch.Tensor, baseline: torch.Tensor, index: int) -> torch.Tensor:
    """LRP epsilon rule (Bach et al. 2015); the baseline is not used."""
    blockers = lrp_blockers(net)
    if blockers:
        hint = ("explain the concepts instead (their maps combine into target maps with attribution.target_maps)"
                if set(blockers) <= {"SparseLinearHead", "GAMHead"} else
                "use deeplift or integrated_gradients for this backbone")
        raise ValueError(f"captum's LRP has no rule for {', '.join(blockers)}; {hint}")
    return captum_attr().LRP(net).attribute(spec.clone().requires_grad_(), target=index)


def segment_mask(bands: int, frames: int, n_bands: int, n_times: int) -> torch.Tensor:
    """(1, 1, bands, frames) integer grid of n_bands x n_times time-frequency segments."""
    rows = np.minimum(np.arange(bands) * n_bands // bands, n_bands - 1)
    cols = np.minimum(np.arange(frames) * n_times // frames, n_times - 1)
    return torch.from_numpy(rows[:, None] * n_times + cols[None, :])[None, None]


def lime(net: nn.Module, spec: torch.Tensor, baseline: torch.Tensor, index: int, *,
         segments: tuple[int, int] = (6, 10), n_samples: int = 200, seed: int = 0) -> torch.Tensor:
    """LIME over (frequency, time) segments switched to silence; each cell shows its segment's weight.

    The surrogate is ridge regression (alpha 1, as in the original LIME): captum's default
    lasso zeroes every weight when the output moves by less than its alpha.
    """
    mask = segment_mask(spec.shape[-2], spec.shape[-1], *segments)
    attr = captum_attr()
    from captum._utils.models.linear_model import SkLearnRidge

    explainer = attr.Lime(net, interpretable_model=SkLearnRidge(alpha=1.0))
    with torch.random.fork_rng():  # LIME draws from torch's global generator: seed it, then restore it
        torch.manual_seed(seed)
        return torch.cat([explainer.attribute(spec[b:b + 1], baselines=baseline[b:b + 1], target=index,
                                              feature_mask=mask, n_samples=n_samples, perturbations_per_eval=16)
                          for b in range(len(spec))])


POSTHOC: dict[str, AttributeFn] = {"occlusion": occlusion, "saliency": saliency, "grad_cam": grad_cam,
                                   "deeplift": deeplift, "lrp": lrp, "lime": lime, **METHODS}


def posthoc_maps(model: AudioModel, audio: Any, method: str, *, outputs: str | None = None,
                 sample_rate: int | None = None, batch_size: int = 4, **options: Any) -> AttributionMaps:
    """Track maps of ``method`` for a black box's targets or a two-stage model's concepts (default)."""
    if method not in POSTHOC:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(POSTHOC)}")
    outputs = outputs or ("concepts" if isinstance(model, TwoStageModel) else "targets")
    return track_maps(model, audio, POSTHOC[method], outputs=outputs, method=method,
                      sample_rate=sample_rate, batch_size=batch_size, **options)
