"""A register concept that a transposition raises by construction (issue 30: structural read-outs).

A trained concept layer reads register from all 128 hidden units, and on recorded music those react to
a pitch shifter's artefacts more than to the shift: after +3 semitones the register of the level-
invariant candidate rose on only 31% of excerpts. Here the register row is replaced by a read-out of one
column only, ``RegisterHeight`` (the melody's and the spectrum's pitch height, ``backbone`` code
``register``), with a non-negative weight (scikit-learn's ``LinearRegression(positive=True)``), so the
concept rises wherever that height rises. The other concepts keep their rows; the additive head is then
refitted on the training clips' concepts (its own ``fit``: the same elastic net), because the emotions
lean on register and the new one is a different, slightly less accurate, variable on the corpus.

This is a closed-form fit, not gradient training: a few minutes on 2 cores for 3000 clips.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LinearRegression

from ..model import TwoStageModel
from .finetune import embeddings
from .loops import ArraySet

#: the backbone with the ``RegisterHeight`` column, and the one it extends
REGISTER_BACKBONE = "compact_transcribe_register"
BASE_BACKBONE = "compact_transcribe_equivariant"


def with_register_height(base: TwoStageModel, spectral_share: float) -> TwoStageModel:
    """A copy of ``base`` (``compact_transcribe_equivariant``) on the ``compact_transcribe_register``
    backbone: every weight copied, the concept layer grown by one zero column for the new height."""
    if base.config.backbone != BASE_BACKBONE:
        raise ValueError(f"{base.name}: a structural register needs the {BASE_BACKBONE!r} backbone, "
                         f"not {base.config.backbone!r}")
    if "register" not in base.config.concept_names:
        raise ValueError(f"{base.name}: has no 'register' concept")
    model = TwoStageModel(replace(base.config, backbone=REGISTER_BACKBONE))
    model.frontend.load_state_dict(base.frontend.state_dict())
    missing = model.backbone.load_state_dict(base.backbone.state_dict(), strict=False).missing_keys
    assert missing == ["register_height.spectral_share"], missing  # the only module the backbone adds
    model.backbone.register_height.spectral_share.fill_(float(spectral_share))
    with torch.no_grad():
        model.concept_layer.weight.zero_()
        model.concept_layer.weight[:, :-1] = base.concept_layer.weight
        model.concept_layer.bias.copy_(base.concept_layer.bias)
    model.head.load_state_dict(base.head.state_dict())
    return model.eval()


def fit_register_readout(model: TwoStageModel, train: ArraySet) -> dict[str, Any]:
    """Set ``model``'s register row to ``bias + w * height`` (w >= 0, least squares on ``train``), then refit
    the head on the training clips' concepts. Returns what was fitted, for the family's results."""
    started = time.perf_counter()
    k = model.config.concept_names.index("register")
    emb = embeddings(model, train)  # (N, hidden + 1), the height last
    height = emb[:, -1:]
    fit = LinearRegression(positive=True).fit(height, train.concepts[:, k])
    with torch.no_grad():
        model.concept_layer.weight[k].zero_()
        model.concept_layer.weight[k, -1] = float(fit.coef_[0])
        model.concept_layer.bias[k] = float(fit.intercept_)
        concepts = model.concept_layer(torch.as_tensor(emb, dtype=torch.float32)).numpy()
    low, high = model.config.concept_scale
    model.head.fit(np.clip(concepts, low, high), train.targets)  # the head reads concepts clipped to the scale
    return {"register_weight": float(fit.coef_[0]), "register_bias": float(fit.intercept_),
            "spectral_share": float(model.backbone.register_height.spectral_share),
            "register_r_train": float(np.corrcoef(concepts[:, k], train.concepts[:, k])[0, 1]),
            "seconds": time.perf_counter() - started}
