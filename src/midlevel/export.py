"""ONNX export: one graph that reads a whole track exactly as ``explain`` does.

The graph takes ``wave``, raw mono float32 waveforms (batch, samples) at the model's sample
rate; batch and length are dynamic (the tracks of one call share a length). Inside, it does
what ``TwoStageModel.explain`` does: shorter tracks are zero-padded to one window, longer ones
cut into windows (10 s, 5 s hop, last window end-aligned), every window goes through
front-end, backbone and concept layer, the track's concepts are the mean of its windows', and
the head is applied to that mean. Outputs of a two-stage model::

    concepts (batch, K)   targets (batch, T)   contributions (batch, T, K)
    window_concepts (batch, n_windows, K)

with ``targets == intercept + contributions.sum(-1)``. The windowing lives in the graph, not in
the caller, because only then is the decomposition exact for every head: a GAM is not linear,
so averaging per-window contributions is not the track's contribution. A black-box model gives
``targets`` (mean of its windows') and ``window_targets``. All windows of a call run at once,
so memory grows with track length: onnxruntime peaked about 0.6 GB higher for a 5-minute track
(compact and VGG alike); split recordings much longer than that.

Model-level metadata (``read_onnx_metadata``): names, scales, sample rate, windowing, model
name and the sha256 of the weights as ``save_pretrained`` writes them. Every value is JSON.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn
from torch.export import Dim

from . import __version__
from ._extras import require
from .errors import MidlevelError
from .checkpoint import weights_sha256  # noqa: F401  (re-exported: the ONNX metadata pins it)
from .ioutil import atomic_path, output_path_problem
from .model import AudioModel, TwoStageModel

if TYPE_CHECKING:
    import onnx

EXPORT_FORMAT = 1
GRAPH_DOC = ("midlevel track graph. wave: (batch, samples) mono float32 at metadata sample_rate. Each track is "
             "zero-padded to one window or cut into windows (window_samples, hop_samples, last window "
             "end-aligned); its outputs are the mean of its windows' (concepts of a two-stage model, with "
             "the head applied to that mean: targets = intercept + contributions.sum(-1)).")


class ExportError(MidlevelError, ValueError):
    """The model cannot be exported to the given path; the message names the path."""


class TrackGraph(nn.Module):
    """What gets exported: waveforms -> track-level outputs of ``model`` (see module docstring)."""

    def __init__(self, model: AudioModel) -> None:
        super().__init__()
        self.model = model
        self.explainable = isinstance(model, TwoStageModel)

    @property
    def output_names(self) -> list[str]:
        """Names of ``model.track_outputs``'s outputs, in its order."""
        if self.explainable:
            return ["concepts", "targets", "contributions", "window_concepts"]
        return ["targets", "window_targets"]

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # the model's own track algorithm, all windows at once (symbolic shapes only)
        return self.model.track_outputs(wave)


def onnx_metadata(model: AudioModel) -> dict[str, Any]:
    """What a consumer needs to read the outputs without midlevel: names, scales, rates."""
    cfg = model.config
    meta: dict[str, Any] = {
        "midlevel_export_format": EXPORT_FORMAT,
        "midlevel_version": __version__,
        "model_name": model.name,
        "model_kind": cfg.kind,
        "backbone": cfg.backbone,
        "sample_rate": cfg.sample_rate,
        "window_seconds": cfg.window_seconds,
        "hop_seconds": cfg.hop_seconds,
        # the windowing in samples, as the graph computes it (the hop is a whole number of STFT frames)
        "window_samples": cfg.window_samples,
        "hop_samples": cfg.hop_samples,
        "target_names": list(cfg.target_names),
        "target_scale": list(cfg.target_scale),
        "weights_sha256": weights_sha256(model),
        "notes": list(cfg.metadata.get("notes", [])),
    }
    if isinstance(model, TwoStageModel):
        meta.update(head=cfg.head, concept_names=list(cfg.concept_names), concept_scale=list(cfg.concept_scale))
    return meta


def _trace(model: AudioModel, opset: int | None) -> onnx.ModelProto:
    cfg = model.config
    # Batch 2 and a length that is no multiple of anything, so neither gets specialised.
    example = torch.zeros(2, cfg.window_samples + cfg.hop_samples // 2 + 1, device=model.frontend.mean.device)
    dynamic = {"wave": {0: Dim("batch", min=1), 1: Dim("samples", min=1)}}
    was_training = model.training
    graph = TrackGraph(model).eval()
    # short DFTs as a matrix product, which onnxruntime runs far faster (``LogFrequencySpectrogram.dft_as_matmul``)
    as_matmul = getattr(model.frontend, "dft_as_matmul", contextlib.nullcontext)
    try:
        with as_matmul():
            program = torch.onnx.export(graph, (example,), dynamo=True, dynamic_shapes=dynamic, opset_version=opset,
                                        input_names=["wave"], output_names=graph.output_names, verbose=False)
    finally:
        model.train(was_training)
    return program.model_proto


def _flush_denormal_initializers(proto: onnx.ModelProto) -> int:
    """Set the graph's float weights below float's smallest normal number to zero; returns how many there were.

    Trained networks keep a few such weights (weight decay shrinks unused ones geometrically; the default has
    288 in one convolution and 110 in its chroma map), and x86 arithmetic on denormals is many times slower:
    that one convolution took twice as long in onnxruntime. PyTorch's ``explain`` runs with denormals flushed
    (``numerics.flush_denormals``), so it already computes with them as zero; onnxruntime's
    ``session.set_denormal_as_zero`` covers only its pool's threads, not the calling thread that a 1-thread
    session computes on (measured: no faster). So the graph stores them as zero, which is what PyTorch uses."""
    from onnx import TensorProto, numpy_helper

    flushed = 0
    for tensor in proto.graph.initializer:
        if tensor.data_type not in (TensorProto.FLOAT, TensorProto.DOUBLE) or tensor.data_location:
            continue
        values = numpy_helper.to_array(tensor)
        denormal = (values != 0) & (np.abs(values) < np.finfo(values.dtype).tiny)
        if denormal.any():
            flushed += int(denormal.sum())
            tensor.CopyFrom(numpy_helper.from_array(np.where(denormal, 0, values).astype(values.dtype), tensor.name))
    return flushed


def export_onnx(model: AudioModel, path: str | Path, *, opset: int | None = None) -> Path:
    """Write ``model`` as a checked ONNX file at ``path`` (atomically) and return the path.

    ``opset`` defaults to the exporter's (20 with torch 2.14); 18 is the lowest it can write.
    """
    if not isinstance(model, AudioModel):
        raise TypeError(f"export_onnx needs a midlevel AudioModel, got {type(model).__name__}")
    onnx = require("onnx", "onnx", "ONNX export")
    require("onnxscript", "onnx", "ONNX export")  # torch's exporter writes the graph with it
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"{path}: is a directory; give the path of the .onnx file to write")
    if problem := output_path_problem(path):  # before the tracing, which takes a while
        raise ExportError(f"{path}: cannot write the ONNX file: {problem}")
    proto = _trace(model, opset)
    written = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if opset is not None and written != opset:  # the exporter falls back instead of failing
        raise ExportError(f"cannot export {path} with opset {opset}: the exporter gave opset {written}; "
                          "use 18 or later")
    _flush_denormal_initializers(proto)
    proto.doc_string = GRAPH_DOC
    onnx.helper.set_model_props(proto, {k: json.dumps(v) for k, v in onnx_metadata(model).items()})
    onnx.checker.check_model(proto, full_check=True)
    try:
        with atomic_path(path) as tmp:
            onnx.save(proto, str(tmp))
    except OSError as exc:
        raise ExportError(f"{path}: cannot write the ONNX file ({exc.strerror or exc})") from None
    return path


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata ``export_onnx`` stored, each value decoded from JSON."""
    onnx = require("onnx", "onnx", "reading ONNX metadata")
    from google.protobuf.message import DecodeError  # protobuf comes with onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except FileNotFoundError:
        raise ExportError(f"{path}: no such file") from None
    except (OSError, DecodeError) as exc:
        raise ExportError(f"{path}: not a readable ONNX file ({exc})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    if "midlevel_export_format" not in props:
        raise ExportError(f"{path}: has no midlevel metadata (not written by midlevel export-onnx)")
    return {k: json.loads(v) for k, v in props.items()}
