"""The per-window network in onnxruntime, for batch work: ``explain`` with onnxruntime's kernels.

``OnnxWindowNetwork(model)`` exports what runs once per window -- the backbone, then the layer after it (concept
layer, or a black box's target layer) -- as an ONNX graph, and runs it in an onnxruntime session.
``model.explain(audio, window_network=net)`` then does everything else as ``explain`` always does, in PyTorch:
the front-end (each STFT frame that overlapping windows share computed once, windows streamed in chunks, so a
long track's memory stays bounded), clipping, averaging over windows, the head, flags and the
out-of-distribution score. Only the per-window arithmetic moves, so results equal PyTorch's to float32
rounding, not bit for bit (``tests/test_onnx_runtime.py``); ``midlevel annotate --runtime onnxruntime`` records
the runtime in every row.

Why not the exported track graph (``export_onnx``)? It runs every window of a call at once, so its memory grows
with the track, and it computes each window's STFT on its own; for a catalogue that is the wrong trade.

The graph is tied to the weights it was built from: it carries their sha256, and a call after the model's
weights changed in place (a fine-tuning step) is refused rather than answered with the old weights.

Exporting takes half a minute for the default (PyTorch's tracing), more than annotating many tracks, so
``cached_window_graph`` keeps each built graph in a cache folder (``cache_dir``), named by the weights' sha256
and a digest of this package's code; a file there that does not read back as such a graph is rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn
from torch.export import Dim

from ._extras import require
from .checkpoint import weights_sha256
from .errors import MidlevelError
from .ioutil import atomic_path
from .model import AudioModel
from .numerics import eval_mode

#: onnxruntime graph optimisation levels by name (``OnnxWindowNetwork``'s ``optimization``). "all" (onnxruntime's
#: default, with NCHWc layout changes) ran every zoo entry's exported graph about as fast as "extended" or faster
#: (benchmarks/results/inference_throughput.md). Timing both on a few windows at start picked different levels for
#: the same graph depending on the music and the moment, and another level changes the last bits: so one fixed.
OPTIMIZATION_LEVELS = ("all", "extended", "basic")


class StaleGraphError(MidlevelError, RuntimeError):
    """The model's weights changed after its onnxruntime graph was built; the message says what to do."""


class _JointWindows(nn.Module):
    """What is exported: spectrograms (N, 1, bands, frames) -> ``joint_from_spectrogram`` (N, E + D)."""

    def __init__(self, model: AudioModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.model.joint_from_spectrogram(spec)


def _weights_version(model: nn.Module) -> tuple[tuple[int, int], ...]:
    """Changes whenever a parameter or buffer is written in place (PyTorch's per-tensor version counter) or
    replaced: cheap enough to check on every call."""
    return tuple((id(t), t._version) for t in model.state_dict(keep_vars=True).values())


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter's notes (torchvision's operators it skips, attribute types it guesses) kept off a user's
    terminal while it traces: they say nothing about the graph a user gets, which is checked by what it computes."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def window_graph(model: AudioModel, *, opset: int | None = None) -> bytes:
    """The serialised ONNX graph of ``model``'s per-window network (``joint_from_spectrogram``), weights below
    float32's smallest normal number stored as zero as PyTorch computes with them (``export``), the weights'
    sha256 in its metadata. Takes half a minute for the default: build it once (``cached_window_graph``) and
    share the bytes (``OnnxWindowNetwork``'s ``graph``)."""
    onnx = require("onnx", "onnx", "the onnxruntime runtime")
    require("onnxscript", "onnx", "the onnxruntime runtime")  # torch's exporter writes the graph with it
    from .export import _flush_denormal_initializers

    cfg = model.config
    device = model.frontend.mean.device
    with torch.no_grad(), eval_mode(model), _quiet_exporter():
        example = model.frontend(torch.zeros(2, cfg.window_samples, device=device))  # batch 2: not specialised
        program = torch.onnx.export(_JointWindows(model).eval(), (example,), dynamo=True, opset_version=opset,
                                    dynamic_shapes={"spec": {0: Dim("windows", min=1)}}, input_names=["spec"],
                                    output_names=["joint"], verbose=False)
    proto = program.model_proto
    _flush_denormal_initializers(proto)
    onnx.helper.set_model_props(proto, {"model_name": json.dumps(model.name),
                                        "weights_sha256": json.dumps(weights_sha256(model))})
    return proto.SerializeToString()


def cache_dir() -> Path:
    """Where ``cached_window_graph`` keeps graphs: ``$MIDLEVEL_CACHE_DIR``, else ``$XDG_CACHE_HOME/midlevel``,
    else ``~/.cache/midlevel``; deleting it only costs rebuilding."""
    if folder := os.environ.get("MIDLEVEL_CACHE_DIR"):
        return Path(folder)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "midlevel"


def _code_digest() -> str:
    """sha256 over this package's Python sources: a graph traced from other code is another graph."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _graph_sha256(graph: bytes) -> str | None:
    """The weights' sha256 a serialised graph says it was built from (None: not such a graph)."""
    onnx = require("onnx", "onnx", "the onnxruntime runtime")
    try:
        props = {p.key: p.value for p in onnx.load_from_string(graph).metadata_props}
        return json.loads(props["weights_sha256"])
    except Exception:  # noqa: BLE001 - a truncated or foreign file: rebuilt, whatever the parser says
        return None


def cached_window_graph(model: AudioModel) -> bytes:
    """``window_graph(model)``, from ``cache_dir()`` when built before with these weights and this code, else
    built and kept there (written atomically; a folder that cannot be written only means no cache)."""
    sha256 = weights_sha256(model)
    path = cache_dir() / "onnx-runtime" / f"{sha256[:32]}-{_code_digest()[:16]}-torch{torch.__version__}.onnx"
    try:
        graph = path.read_bytes()
        if _graph_sha256(graph) == sha256:
            return graph
    except OSError:
        pass
    graph = window_graph(model)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_bytes(graph)
    except OSError:
        pass
    return graph


def _session(graph: bytes, threads: int, optimization: str):
    ort = require("onnxruntime", "onnx", "the onnxruntime runtime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # as PyTorch computes under ``numerics.flush_denormals``: this covers onnxruntime's pool threads, and
    # ``explain``'s own flush covers the calling thread, on which a 1-thread session computes
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    # no busy-waiting between calls: PyTorch's front-end runs between them, and onnxruntime's spinning threads took
    # its cores (2 threads: the default at 214x real time with spinning, 327x without; torch alone 242x)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}[optimization]
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


class OnnxWindowNetwork:
    """``model.joint_from_spectrogram`` run by onnxruntime: pass it as ``explain``'s (or ``predict``'s)
    ``window_network``. ``threads``: onnxruntime's intra-op threads (default: torch's current count).
    ``optimization``: onnxruntime's graph optimisation level (``OPTIMIZATION_LEVELS``). ``graph``: bytes of
    ``window_graph`` (default: ``cached_window_graph(model)``)."""

    def __init__(self, model: AudioModel, *, threads: int | None = None, optimization: str = "all",
                 graph: bytes | None = None) -> None:
        if optimization not in OPTIMIZATION_LEVELS:
            raise ValueError(f"optimization {optimization!r}: choose one of {', '.join(OPTIMIZATION_LEVELS)}")
        graph = cached_window_graph(model) if graph is None else graph
        threads = threads or torch.get_num_threads()
        self.session = _session(graph, threads, optimization)
        # read from the session, so that a worker handed the bytes needs no onnx package
        built_from = json.loads(self.session.get_modelmeta().custom_metadata_map.get("weights_sha256", "null"))
        if built_from != (expected := weights_sha256(model)):
            raise StaleGraphError(f"this graph was built from weights {str(built_from)[:12]}, not from {model.name}'s "
                                  f"(weights {expected[:12]}); build it from the model it runs for")
        self.optimization = optimization
        self.model = model
        self.threads = threads
        self._version = _weights_version(model)

    def __call__(self, spec: torch.Tensor) -> torch.Tensor:
        if _weights_version(self.model) != self._version:
            raise StaleGraphError(f"the weights of {self.model.name} changed after its onnxruntime graph was built; "
                                  "build a new OnnxWindowNetwork from the model as it is now")
        array = np.ascontiguousarray(spec.detach().cpu().numpy(), dtype=np.float32)
        (joint,) = self.session.run(["joint"], {"spec": array})
        return torch.from_numpy(joint)


__all__ = ["OPTIMIZATION_LEVELS", "OnnxWindowNetwork", "StaleGraphError", "cache_dir", "cached_window_graph",
           "window_graph"]
