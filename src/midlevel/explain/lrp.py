"""Layer-wise relevance propagation (LRP) for any model built of standard layers, with captum.

Becker et al. (2018, AudioMNIST) explain a spectrogram CNN and a raw-waveform CNN with LRP: the network's
output for one class is redistributed, layer by layer, onto its input, so every spectrogram cell (or every
sample of the waveform) gets a share of the class's logit. Here the input is what ``model.frontend(wave)``
returns -- the normalised log spectrogram (batch, 1, bands, frames), or the level-normalised waveform
(batch, 1, 1, samples) of a raw-waveform model -- and the output is ``model.outputs_from_spectrogram``: a
black box's class logits, or a two-stage model's concepts. The front-end itself (STFT, level normalisation)
is not propagated through.

**Which networks.** The network is traced with ``torch.fx``: every module it calls must be one of
``RULES``' layers (convolutions, linear layers, batch norms, pooling, ReLU, dropout, flatten), each called
once, and every function between them a pure reshape (``flatten``, ``view``, ``getitem``, ...). Anything else
(an addition, a sigmoid, a whitening step, the music descriptors of ``compact_music``) has no LRP rule here,
and ``LRPUnsupportedError`` names it in one line instead of returning a map that does not mean what it says.

**Rules.** Batch norms are first folded into the convolution before them (Montavon et al. 2019's
"canonization"; the same function in eval mode). Layers with weights then use the epsilon rule
``R_i = sum_j x_i w_ij / (z_j + eps sign(z_j)) R_j`` with ``epsilon``; max pooling passes relevance to the
winner, average pooling in proportion, reshapes unchanged (epsilon 1e-9 there: they have nothing to absorb);
ReLU and dropout pass it through. captum attaches these rules by hand for the 1-D layers it has no default
for (Conv1d, BatchNorm1d, AdaptiveAvgPool1d, AvgPool1d, Flatten, Identity).

**Conservation, measured rather than assumed.** With ``epsilon`` -> 0 the relevance of a ReLU network equals
gradient x input (Ancona et al. 2018; ``tests/test_lrp.py`` checks it), and the relevances sum to the logit
only if the network has no bias terms. These networks have biases (the folded batch norms' shifts, the last
linear layer's), which absorb relevance, and a larger epsilon absorbs more. ``LRPExplanation.data()`` reports
the sum of the relevances, the logit, and their gap for every explanation; the study page gives the gaps
measured on the spoken-digit models.

A track longer than one window is read window by window, as the model reads it; the track's map is the sum
of its windows' maps placed at their times divided by the number of windows (the track's output is the mean
of its windows'), so the gap is the mean of the windows' gaps.
"""

from __future__ import annotations

import copy
import operator
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._extras import require
from ..audio import pad_to_length
from ..errors import MidlevelError
from ..model import AudioModel, TwoStageModel, stream_windows, window_starts
from ..numerics import flush_denormals
from .attribution import band_frequencies, place_window, track_spectrogram
from .listen import Listenable, split_time, split_time_frequency, top_cells

#: default epsilon of the layers with weights (logit units: the spoken-digit models' logits are ~5-30)
DEFAULT_EPSILON = 1e-2
#: layers with weights: the epsilon rule with the caller's epsilon
WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear)
#: layers that only route or reshape values: the epsilon rule with a vanishing epsilon (LRP-0)
ROUTING_LAYERS = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
                  nn.AdaptiveAvgPool2d, nn.Flatten, nn.Identity)
#: batch norms not folded (one that does not follow a convolution): treated as an affine layer
AFFINE_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d)
#: passed through by captum's own handling of non-linear layers
PASS_THROUGH = (nn.ReLU, nn.Dropout)
RULES = WEIGHT_LAYERS + ROUTING_LAYERS + AFFINE_LAYERS + PASS_THROUGH
#: functions (and tensor methods) allowed between the layers: they move values without changing them
RESHAPES = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.cat, operator.getitem}
RESHAPE_METHODS = {"flatten", "reshape", "view", "squeeze", "unsqueeze", "contiguous", "size", "dim"}
LRP_0 = 1e-9


class LRPUnsupportedError(MidlevelError, ValueError):
    """The network has an operation LRP has no rule for here; the message names it (one line)."""


def captum_lrp() -> Any:
    """captum's LRP class and rules (captum comes with the ``report`` extra)."""
    require("captum.attr", "report", "LRP relevance maps")
    from captum.attr import LRP
    from captum.attr._utils.lrp_rules import EpsilonRule

    return LRP, EpsilonRule


class _Outputs(nn.Module):
    """``model.outputs_from_spectrogram`` as a module of its own (a private copy, in-place ReLUs off)."""

    def __init__(self, model: AudioModel) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).eval()
        for module in self.model.modules():
            if isinstance(module, nn.ReLU):
                module.inplace = False  # captum's hooks cannot follow a tensor changed in place

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.outputs_from_spectrogram(x)


def _describe(node: Any) -> str:
    target = node.target
    return getattr(target, "__name__", str(target))


def lrp_network(model: AudioModel, *, fold_batch_norms: bool = True) -> nn.Module:
    """Front-end output -> the model's outputs as a traced copy holding only the modules it calls.

    Raises ``LRPUnsupportedError`` (one line) when an operation has no rule (module docstring)."""
    from torch import fx

    try:
        traced = fx.symbolic_trace(_Outputs(model))
    except Exception as exc:  # data-dependent control flow, unsupported Python: not a plain layer stack
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LRPUnsupportedError(f"{model.name}: LRP needs a network of standard layers, and its "
                                  f"{type(model.backbone).__name__} backbone cannot be traced ({first[:120]})") from None
    modules = dict(traced.named_modules())
    problems: list[str] = []
    called: set[str] = set()
    for node in traced.graph.nodes:
        if node.op == "call_module":
            module = modules[node.target]
            if type(module) not in RULES:  # the exact class: a subclass may compute something else
                problems.append(f"{type(module).__name__} ({node.target.removeprefix('model.')})")
            elif node.target in called:
                problems.append(f"{node.target.removeprefix('model.')} used twice")
            called.add(node.target)
        elif node.op == "call_function" and node.target not in RESHAPES:
            problems.append(f"the function {_describe(node)}")
        elif node.op == "call_method" and node.target not in RESHAPE_METHODS:
            problems.append(f"the tensor method {node.target}")
    if problems:
        shown = list(dict.fromkeys(problems))
        more = f" and {len(shown) - 4} more" if len(shown) > 4 else ""
        raise LRPUnsupportedError(f"{model.name}: LRP has no rule for {', '.join(shown[:4])}{more} in its "
                                  f"{type(model.backbone).__name__} backbone; use a gradient method "
                                  "(explain.attribution, explain.posthoc) or SHAP for this model")
    if fold_batch_norms:
        fold_batch_norms_into_convs(traced)
    return traced.eval()


def fold_batch_norms_into_convs(traced: Any) -> Any:
    """Fold every batch norm whose input is a convolution read by nothing else into that convolution, in
    place on a traced network (the same function in eval mode, up to float rounding); returns it."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    modules = dict(traced.named_modules())
    pairs = {(nn.BatchNorm1d, nn.Conv1d), (nn.BatchNorm2d, nn.Conv2d)}
    for node in list(traced.graph.nodes):
        if node.op != "call_module" or len(node.args) != 1:
            continue
        source = node.args[0]
        if not (isinstance(source, torch.fx.Node) and source.op == "call_module" and len(source.users) == 1):
            continue
        bn, conv = modules[node.target], modules[source.target]
        if (type(bn), type(conv)) not in pairs or not bn.track_running_stats:
            continue
        parent, _, name = source.target.rpartition(".")
        setattr(traced.get_submodule(parent) if parent else traced, name, fuse_conv_bn_eval(conv.eval(), bn.eval()))
        node.replace_all_uses_with(source)
        traced.graph.erase_node(node)
    traced.delete_all_unused_submodules()
    traced.recompile()
    return traced


def attach_rules(net: nn.Module, epsilon: float) -> nn.Module:
    """Set each leaf's LRP rule (module docstring); returns ``net``."""
    _, EpsilonRule = captum_lrp()
    for module in net.modules():
        if list(module.children()):
            continue
        if type(module) in WEIGHT_LAYERS + AFFINE_LAYERS:
            module.rule = EpsilonRule(epsilon=epsilon)
        elif type(module) in ROUTING_LAYERS:
            module.rule = EpsilonRule(epsilon=LRP_0)
    return net


def relevance(net: nn.Module, x: torch.Tensor, index: int, *, epsilon: float = DEFAULT_EPSILON
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(relevance like ``x``, outputs (B,)) of output ``index`` for a batch of network inputs."""
    LRP, _ = captum_lrp()
    attach_rules(net, epsilon)
    with torch.no_grad():
        out = net(x)[:, index]
    rel = LRP(net).attribute(x.detach().clone().requires_grad_(), target=index)
    return rel.detach(), out


@dataclass
class LRPExplanation:
    """An LRP map of one output over a track: relevance with its axes (InterpretML style: ``data()``, ``plot()``)."""

    source: str
    model_name: str
    representation: str  # "log_spectrogram" or "waveform"
    output_name: str
    output_index: int
    relevance: np.ndarray  # (bands, frames) for a spectrogram, (samples,) for a waveform
    times: np.ndarray  # seconds of each frame's centre, or of each sample
    frequencies: np.ndarray | None  # (bands,) Hz; None for a waveform
    output: float  # the track's output (class logit): the mean of its windows'
    relevance_sum: float
    epsilon: float
    n_windows: int
    seconds: float
    duration: float
    sample_rate: int
    display: np.ndarray  # (bands, frames) log spectrogram, or (samples,) level-normalised waveform
    names: list[str] = field(default_factory=list)

    # the attribute names ``views_plotting.draw_spectrogram`` reads
    @property
    def frame_times(self) -> np.ndarray:
        return self.times

    @property
    def band_frequencies(self) -> np.ndarray | None:
        return self.frequencies

    @property
    def conservation_gap(self) -> float:
        """output - sum of relevances: what biases and epsilon absorbed (0 for a conservative propagation)."""
        return self.output - self.relevance_sum

    def over_time(self, frame_seconds: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(times, relevance per time step): summed over frequency, or over the samples of each
        ``frame_seconds`` frame of a waveform (default 10 ms); sums are kept."""
        if self.representation != "waveform":
            return self.times, self.relevance.sum(axis=0)
        step = max(1, int(round((frame_seconds or 0.01) * self.sample_rate)))
        edges = np.arange(0, len(self.relevance), step)
        sums = np.add.reduceat(self.relevance, edges)
        return (edges + np.minimum(step, len(self.relevance) - edges) / 2) / self.sample_rate, sums

    def data(self) -> dict[str, Any]:
        """The relevance and its axes, the output explained and the conservation check."""
        axes = ["frequency", "time"] if self.representation != "waveform" else ["time"]
        return {"method": "lrp", "rule": f"epsilon ({self.epsilon:g}), batch norms folded",
                "model": self.model_name, "source": self.source, "representation": self.representation,
                "explained": self.output_name, "explained_index": self.output_index,
                "relevance": self.relevance, "axes": axes, "time_s": self.times,
                "frequency_hz": self.frequencies, "logit": self.output, "relevance_sum": self.relevance_sum,
                "conservation_gap": self.conservation_gap,
                "relative_gap": self.conservation_gap / abs(self.output) if self.output else float("nan"),
                "n_windows": self.n_windows, "seconds": self.seconds}

    def plot(self, path: str | Path | None = None):
        """The input, the relevance over it (red: for the output, blue: against), and relevance over time."""
        require("matplotlib", "report", "LRPExplanation.plot")
        return plot_lrp(self, path)


def _output_index(model: AudioModel, names: list[str], target: int | str | None, first_output: np.ndarray) -> int:
    if target is None:
        return int(np.argmax(first_output))
    if isinstance(target, str):
        if target not in names:
            raise MidlevelError(f"{model.name} has no output {target!r}; its outputs are {names}")
        return names.index(target)
    if not 0 <= int(target) < len(names):
        raise MidlevelError(f"output index {target} is outside 0-{len(names) - 1} for {model.name}")
    return int(target)


def explain_lrp(model: AudioModel, audio: Any, *, target: int | str | None = None, epsilon: float = DEFAULT_EPSILON,
                sample_rate: int | None = None, batch_size: int = 4, fold_batch_norms: bool = True,
                net: nn.Module | None = None) -> LRPExplanation:
    """LRP map of one output of ``model`` over ``audio`` (default: the output largest for the track: the
    predicted class of a classifier). ``net``: a network from ``lrp_network`` to reuse (timing loops)."""
    started = time.perf_counter()
    net = net if net is not None else lrp_network(model, fold_batch_norms=fold_batch_norms)
    names = list(model.config.concept_names if isinstance(model, TwoStageModel) else model.config.target_names)
    clip = model.read_audio(audio, sample_rate=sample_rate)
    cfg, frontend = model.config, model.frontend
    window = cfg.window_samples
    samples, _ = pad_to_length(clip.samples, window)
    starts = window_starts(len(samples), window, cfg.hop_samples)
    waveform = getattr(cfg.frontend, "representation", "log_spectrogram") == "waveform"
    hop = cfg.frontend.hop_length
    with torch.no_grad():
        specs = [frontend(torch.from_numpy(b)) for b in stream_windows(samples, window, cfg.hop_samples, batch_size)]
    if target is None:
        with torch.no_grad():
            target_out = torch.cat([net(s) for s in specs]).double().mean(0).numpy()
    index = _output_index(model, names, target, target_out if target is None else None)
    n_bands = specs[0].shape[2]
    maps = np.zeros((1, n_bands, frontend.n_frames(len(samples))), dtype=np.float32)
    out_sum, done = 0.0, 0
    with flush_denormals():
        for spec in specs:
            rel, out = relevance(net, spec, index, epsilon=epsilon)
            out_sum += float(out.double().sum())
            for b in range(len(spec)):
                first, frac = divmod(starts[done + b] / hop, 1.0)
                place_window(maps, rel[b].numpy(), int(first), frac)
            done += len(spec)
    maps /= len(starts)
    if waveform:
        rel_map, times, freqs = maps[0, 0], np.arange(maps.shape[-1]) / cfg.sample_rate, None
        with torch.no_grad():
            display = frontend.level_normalize(torch.from_numpy(samples)[None])[0].numpy()
    else:
        rel_map, freqs = maps[0], band_frequencies(model)
        times = np.arange(maps.shape[-1]) * hop / cfg.sample_rate
        display = track_spectrogram(model, samples)
    return LRPExplanation(
        source=clip.source, model_name=model.name, representation="waveform" if waveform else "log_spectrogram",
        output_name=names[index], output_index=index, relevance=rel_map, times=times, frequencies=freqs,
        output=out_sum / len(starts), relevance_sum=float(rel_map.astype(np.float64).sum()), epsilon=float(epsilon),
        n_windows=len(starts), seconds=time.perf_counter() - started, duration=clip.duration,
        sample_rate=cfg.sample_rate, display=display, names=names)


def plot_lrp(expl: LRPExplanation, path: str | Path | None = None):
    """Two or three panels: input, relevance over it, relevance over time (``matplotlib.figure.Figure``)."""
    import matplotlib
    from matplotlib.cm import ScalarMappable
    from matplotlib.figure import Figure

    from ..plotting import save_png
    from .views_plotting import diverging_norm, draw_spectrogram

    title = (f"{Path(expl.source).name}: LRP of {expl.output_name} ({expl.model_name}), logit {expl.output:.3g}, "
             f"relevance sum {expl.relevance_sum:.3g}")
    cmap = matplotlib.colormaps["RdBu_r"]
    t, over_time = expl.over_time()
    fig = Figure(figsize=(9, 6))
    if expl.representation == "waveform":
        grid = fig.add_gridspec(2, 2, width_ratios=[50, 1], height_ratios=[2, 1])
        ax_w = fig.add_subplot(grid[0, 0])
        # relevance per 10 ms frame as coloured bands behind the waveform (single samples are too fine to see)
        norm = diverging_norm(over_time)
        step = t[1] - t[0] if len(t) > 1 else 0.01
        edges = np.r_[t - step / 2, t[-1] + step / 2]
        peak = float(np.abs(expl.display).max()) or 1.0
        ax_w.pcolormesh(edges, [-1.05 * peak, 1.05 * peak], over_time[None], cmap=cmap, norm=norm, shading="flat",
                        rasterized=True)
        ax_w.plot(expl.times, expl.display, color="black", linewidth=0.3, rasterized=True)
        ax_w.set_ylabel("level-normalised\nwaveform", fontsize=8)
        fig.colorbar(ScalarMappable(norm, cmap), cax=fig.add_subplot(grid[0, 1]), label="relevance per 10 ms")
        ax_t = fig.add_subplot(grid[1, 0], sharex=ax_w)
        ax_w.set_title(title, fontsize=9)
        ax_w.tick_params(labelbottom=False)
    else:
        grid = fig.add_gridspec(3, 2, width_ratios=[50, 1], height_ratios=[2, 2, 1])
        ax_s = fig.add_subplot(grid[0, 0])
        ax_a = fig.add_subplot(grid[1, 0], sharex=ax_s)
        ax_t = fig.add_subplot(grid[2, 0], sharex=ax_s)
        mesh = draw_spectrogram(ax_s, expl, expl.display, cmap="magma")
        fig.colorbar(mesh, cax=fig.add_subplot(grid[0, 1]), label="log10(1 + magnitude)")
        ax_s.set_title(title, fontsize=9)
        draw_spectrogram(ax_a, expl, expl.display, cmap="Greys", alpha=0.5)
        norm = diverging_norm(expl.relevance)
        rgba = cmap(norm(expl.relevance))
        rgba[..., 3] = np.clip(np.abs(expl.relevance) / norm.vmax, 0, 1)
        draw_spectrogram(ax_a, expl, rgba)
        fig.colorbar(ScalarMappable(norm, cmap), cax=fig.add_subplot(grid[1, 1]), label="relevance")
        ax_a.set_title("relevance: red for the output, blue against", fontsize=9)
        for ax in (ax_s, ax_a):
            ax.tick_params(labelbottom=False)
    ax_t.plot(t, over_time, color="black", linewidth=0.8)
    ax_t.axhline(0, color="grey", linewidth=0.5)
    ax_t.set_ylabel("relevance\nper frame", fontsize=8)
    ax_t.set_xlabel("time (s)")
    fig.tight_layout()
    return save_png(fig, path, dpi=100)


def top_frames(scores: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of the ``fraction`` of frames with the highest positive score (``listen.top_cells`` in 1-D)."""
    return top_cells(np.asarray(scores, dtype=np.float64), fraction)


def frame_spans(mask: np.ndarray, frame_seconds: float, offset: float = 0.0) -> list[tuple[float, float]]:
    """Runs of True frames as (start, end) seconds; frame i covers ``offset + [i, i + 1) * frame_seconds``."""
    spans, start = [], None
    for i, on in enumerate(np.r_[mask, False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            spans.append((offset + start * frame_seconds, offset + i * frame_seconds))
            start = None
    return spans


def lrp_listenable(model: AudioModel, audio: Any, expl: LRPExplanation, *, fraction: float = 0.2,
                   sample_rate: int | None = None, fade: float = 0.005) -> list[Listenable]:
    """What carried the answer, to listen to: the 10 ms frames (and, for a spectrogram, the time-frequency
    cells) with the highest positive relevance, against the rest (``listen``: ``part + rest`` is the input).

    ``fraction``: of the frames (of the cells) kept in the part."""
    clip = model.read_audio(audio, sample_rate=sample_rate)
    sr = clip.sample_rate
    frame_seconds = 0.01 if expl.representation == "waveform" else model.config.frontend.hop_length / sr
    times, per_frame = expl.over_time(frame_seconds)
    mask = top_frames(per_frame, fraction)
    # each frame is centred on its time: its span starts half a frame earlier
    spans = frame_spans(mask, frame_seconds, offset=float(times[0]) - frame_seconds / 2)
    spans = [(max(0.0, a), min(clip.duration, b)) for a, b in spans]
    parts = [split_time(clip.samples, sr, spans, fade=fade,
                        description=f"the {fraction:.0%} of 10 ms frames with the highest LRP relevance for "
                                    f"{expl.output_name} ({expl.model_name})")]
    if expl.representation != "waveform":
        fe = model.config.frontend
        parts.append(split_time_frequency(
            clip.samples, sr, expl.relevance, model.frontend.filterbank.numpy(), n_fft=fe.n_fft, hop=fe.hop_length,
            fraction=fraction / 2, description=f"the time-frequency cells with the highest LRP relevance for "
                                               f"{expl.output_name}"))
    return parts
