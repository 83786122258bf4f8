"""Training callbacks: watch a network's explanation change while it trains (issue #32).

``train_network(..., callbacks=[...])`` calls each callback at three points, in the manner of Keras and
Lightning:

* ``on_train_begin(info)``: once per run, before the first epoch it trains (``info.start_epoch`` > 0 when
  the run resumes). One callback object may see several runs in a row (``train_family`` trains up to four
  networks), so everything about a run is set up here, not in ``__init__``.
* ``on_epoch_end(epoch, model, logs)``: after each epoch that this run actually trains, once the epoch's
  state is saved (a crash in a callback never loses an epoch; the resumed run calls it again for the next
  epoch only). ``logs`` is a copy of the epoch's row of ``metrics.jsonl``.
* ``on_train_end(model, history)``: after the loop, with the best epoch's weights loaded into ``model``.

Callbacks observe; they cannot change what is trained. They are not part of the saved training state, and
``CallbackList`` saves and restores torch's global random state around every call, so a run gives
bit-identical weights with or without them (a callback must still leave the model's weights alone; the
loop sets the train/eval modes again at the start of each epoch).

Built-in: ``ExplanationLogger`` computes, on a fixed sample of validation clips, what the model explains
(concept and target r, the head, contributions, attribution maps, the listenable part of a clip) and hands
it to writers: ``TensorBoardWriter`` (the ``tensorboard`` extra) and ``MetricsLogWriter`` (JSON lines).
``explanation_callbacks(DIR)`` is what ``midlevel train/finetune --log-explanations DIR`` uses. Any object
with (some of) the three methods is a callback, e.g.::

    class Printer(Callback):
        def on_epoch_end(self, epoch, model, logs):
            print(epoch, logs["score"])

    train_network(model, train, valid, settings, out, callbacks=[Printer()])
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .._extras import require_all
from ..audio import load_audio, pad_to_length
from ..heads import SparseLinearHead
from ..ioutil import atomic_write_text
from ..model import AudioModel, TwoStageModel
from .metrics import pearson_per_column


@dataclass(frozen=True)
class TrainInfo:
    """What a run trains on, given to ``Callback.on_train_begin``."""

    model: AudioModel
    settings: Any  # loops.TrainSettings
    train: Any  # loops.ArraySet
    valid: Any  # loops.ArraySet
    out_dir: Path
    #: the first epoch this run trains: 0 for a new run, more for a resumed one
    start_epoch: int

    @property
    def name(self) -> str:
        """The run's folder name (``a2mid``, ``joint-linear``, ``a2e`` in ``train_family``)."""
        return self.out_dir.name


class Callback:
    """No-op base: override what you need (any object with these methods will do; missing ones are skipped)."""

    def on_train_begin(self, info: TrainInfo) -> None:
        """A run starts (or resumes at ``info.start_epoch``)."""

    def on_epoch_end(self, epoch: int, model: AudioModel, logs: dict[str, float]) -> None:
        """Epoch ``epoch`` (0-based) is trained, validated and saved; ``logs``: its ``metrics.jsonl`` row."""

    def on_train_end(self, model: AudioModel, history: list[dict[str, float]]) -> None:
        """The run is over; ``model`` holds the best epoch's weights, ``history`` every epoch's row."""


class CallbackList:
    """Calls callbacks in order, each with torch's global random state saved and restored around it, so that
    nothing a callback draws (or a library it calls draws) shifts what training draws after it."""

    def __init__(self, callbacks: Sequence[Any] = ()) -> None:
        self.callbacks = list(callbacks)

    def _call(self, method: str, *args: Any) -> None:
        for callback in self.callbacks:
            hook = getattr(callback, method, None)
            if hook is None:
                continue
            state = torch.random.get_rng_state()
            try:
                hook(*args)
            finally:
                torch.random.set_rng_state(state)

    def on_train_begin(self, info: TrainInfo) -> None:
        self._call("on_train_begin", info)

    def on_epoch_end(self, epoch: int, model: AudioModel, logs: dict[str, float]) -> None:
        self._call("on_epoch_end", epoch, model, dict(logs))

    def on_train_end(self, model: AudioModel, history: list[dict[str, float]]) -> None:
        self._call("on_train_end", model, [dict(row) for row in history])


# -- what an epoch's explanation holds, and where it goes -----------------------------------------
@dataclass
class EpochRecord:
    """One epoch of ``ExplanationLogger``: the loop's own ``logs``, and the logger's scalars, images
    ((H, W, 3) uint8) and audio ((samples, sample rate)) by tag."""

    epoch: int
    logs: dict[str, float] = field(default_factory=dict)
    scalars: dict[str, float] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict)
    audio: dict[str, tuple[np.ndarray, int]] = field(default_factory=dict)


def _run_dir(directory: str | Path | None, info: TrainInfo, per_run: bool) -> Path:
    root = Path(directory) if directory is not None else info.out_dir
    return root / info.name if per_run else root


class TensorBoardWriter:
    """Writes records as TensorBoard events in ``log_dir`` (``log_dir/<run name>`` with ``per_run``), flushed
    every epoch; ``tensorboard --logdir log_dir`` shows them. Needs the ``tensorboard`` extra.

    The loop's logs go under ``epoch/`` (``epoch/train_loss``, ``epoch/score``, ...). A resumed run appends
    a new event file and drops events of the epochs it trains again (``purge_step``)."""

    def __init__(self, log_dir: str | Path, *, per_run: bool = False) -> None:
        require_all(("tensorboard",), "tensorboard", "TensorBoardWriter")
        self.log_dir, self.per_run = Path(log_dir), per_run
        self._writer = None

    def open(self, info: TrainInfo) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.close()
        self._writer = SummaryWriter(str(_run_dir(self.log_dir, info, self.per_run)),
                                     purge_step=info.start_epoch or None)

    def write(self, record: EpochRecord) -> None:
        w, step = self._writer, record.epoch
        for key, value in record.logs.items():
            w.add_scalar(f"epoch/{key}", value, step)
        for tag, value in record.scalars.items():
            w.add_scalar(tag, value, step)
        for tag, image in record.images.items():
            w.add_image(tag, image, step, dataformats="HWC")
        for tag, (samples, rate) in record.audio.items():
            w.add_audio(tag, torch.from_numpy(np.clip(samples, -1.0, 1.0))[None], step, sample_rate=rate)
        w.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class MetricsLogWriter:
    """Writes each record's scalars as one JSON line ``{"epoch": e, tag: value, ...}`` to
    ``directory/explanations.jsonl`` (default directory: the run's folder, beside its ``metrics.jsonl``, whose
    rows it matches by epoch; ``per_run``: ``directory/<run name>/``).

    A separate file rather than extra columns in ``metrics.jsonl``: that file is rewritten from the saved
    training state, and callbacks are not part of that state. Like it, this one is rewritten whole and
    atomically each epoch; a resumed run keeps the rows of the epochs before it and replaces the rest."""

    def __init__(self, directory: str | Path | None = None, *, per_run: bool = False) -> None:
        self.directory, self.per_run = directory, per_run
        self.path: Path | None = None
        self.rows: list[dict[str, Any]] = []

    def open(self, info: TrainInfo) -> None:
        self.path = _run_dir(self.directory, info, self.per_run) / "explanations.jsonl"
        old = self.path.read_text(encoding="utf-8").splitlines() if self.path.is_file() else []
        self.rows = [row for row in map(json.loads, filter(None, old)) if row["epoch"] < info.start_epoch]

    def write(self, record: EpochRecord) -> None:
        self.rows = [row for row in self.rows if row["epoch"] < record.epoch]
        self.rows.append({"epoch": record.epoch, **record.scalars})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, "".join(json.dumps(row) + "\n" for row in self.rows))

    def close(self) -> None:
        pass


# -- the built-in explanation logger ---------------------------------------------------------------
class ExplanationLogger(Callback):
    """Each epoch, what the model explains on a fixed validation sample, handed to ``writers``.

    The sample is the first ``n_clips`` (default 16) clips of the validation set, fixed when the run begins.
    Per epoch:

    * scalars: Pearson r per concept and per target on the sample (``concept_r/<name>``, ``target_r/<name>``,
      and ``/mean``); the loop's own logs (whole validation set) travel alongside;
    * ``head/weights`` (linear head: the target x concept weight table) or ``head/shape_functions`` (GAM: each
      concept's curves), and ``head/contributions``: per target, a box per concept of its contributions over
      the sample (Chowdhury et al. 2019, Fig. 3);
    * for the first ``n_listen`` (default 2) clips, ``clip_<i>/attribution``: the gradient x input map of one
      output over the clip's spectrogram (the output whose label is furthest from the middle of its scale,
      fixed at the start; a target when the head is logged or the model is a black box, else a concept);
    * with the clips' audio, ``clip_<i>/part``: the top ``tf_fraction`` of its time-frequency cells by that
      map, resynthesised (``explain.listen.split_time_frequency``); the clip itself once, as ``clip_<i>/input``.

    Audio: an ``ArraySet`` holds log spectrograms only (magnitudes: nothing to resynthesise from), so the
    waveforms come from ``audio`` (paths, or mono arrays at the model's rate, one per listened clip, in the
    validation set's order) or else from ``ArraySet.paths`` (what ``train_family`` and ``finetune`` fill in);
    with neither, no audio is logged. Each is cut or padded to the model's window, as the spectrogram cache is.

    ``head``: whether to log the head's views and target r of a two-stage model; default (None): when the
    setup trains the head (``joint``). In the ``concepts`` setup the head is fitted only after training.

    Everything runs in eval mode under ``torch.no_grad()`` (the attribution map takes gradients with respect
    to its input only, through a private copy of the network), and each module's train/eval mode is restored
    afterwards (a model training on an accelerator is explained through a CPU copy). At the defaults it costs
    about 2 s an epoch on two CPU cores (4-7% of an epoch on 3000 clips).
    """

    def __init__(self, writers: Sequence[Any], *, n_clips: int = 16, n_listen: int = 2,
                 audio: Sequence[Any] | None = None, head: bool | None = None, tf_fraction: float = 0.1,
                 dpi: int = 72) -> None:
        require_all(("matplotlib",), "tensorboard", "ExplanationLogger")
        if n_clips < 1 or not 0 <= n_listen <= n_clips:
            raise ValueError(f"need n_clips >= 1 and 0 <= n_listen <= n_clips; got {n_clips}, {n_listen}")
        self.writers, self.n_clips, self.n_listen = list(writers), n_clips, n_listen
        self.audio, self.head, self.tf_fraction, self.dpi = audio, head, tf_fraction, dpi

    def on_train_begin(self, info: TrainInfo) -> None:
        model, valid, n = info.model, info.valid, min(self.n_clips, len(info.valid))
        self.logspec = valid.logspec[:n].float().clone()
        self.concepts = None if valid.concepts is None else np.asarray(valid.concepts[:n], dtype=np.float64)
        self.targets = None if valid.targets is None else np.asarray(valid.targets[:n], dtype=np.float64)
        two_stage = isinstance(model, TwoStageModel)
        self.head_on = two_stage and (info.settings.setup == "joint" if self.head is None else self.head)
        self.kind = "targets" if (self.head_on and self.targets is not None) or not two_stage else "concepts"
        cfg = model.config
        labels, scale = ((self.targets, cfg.target_scale) if self.kind == "targets"
                         else (self.concepts, cfg.concept_scale))
        listen = min(self.n_listen, n)
        self.explained = [int(np.argmax(np.abs(labels[i] - sum(scale) / 2))) if labels is not None else 0
                          for i in range(listen)]
        sources = self.audio if self.audio is not None else getattr(valid, "paths", None)
        self.waves = [self._wave(model, s) for s in list(sources or [])[:listen]]
        self.first = True  # the run's first epoch also carries the clips themselves, to compare the parts with
        for writer in self.writers:
            writer.open(info)

    @staticmethod
    def _wave(model: AudioModel, source: Any) -> np.ndarray:
        rate, window = model.config.sample_rate, model.config.window_samples
        if isinstance(source, (str, os.PathLike)):
            clip = load_audio(source, rate, check_level=False)
        else:
            clip = load_audio(np.asarray(source, dtype=np.float32), rate, source_sample_rate=rate, check_level=False)
        return pad_to_length(clip.samples, window)[0][:window]

    def on_epoch_end(self, epoch: int, model: AudioModel, logs: dict[str, float]) -> None:
        if model.frontend.mean.device.type != "cpu":  # explained on the CPU, like the sample and the figures
            model = copy.deepcopy(model).cpu()
        modes = [(module, module.training) for module in model.modules()]
        model.eval()
        try:
            with torch.no_grad():
                record = self.explain(epoch, model)
        finally:
            for module, training in modes:
                module.training = training
        record.logs = {k: float(v) for k, v in logs.items() if k != "epoch" and isinstance(v, (int, float))}
        if self.first:
            record.audio.update({f"clip_{i}/input": (w, model.config.sample_rate) for i, w in enumerate(self.waves)})
            self.first = False
        for writer in self.writers:
            writer.write(record)

    def on_train_end(self, model: AudioModel, history: list[dict[str, float]]) -> None:
        for writer in self.writers:
            writer.close()

    def explain(self, epoch: int, model: AudioModel) -> EpochRecord:
        """The epoch's record (the model in eval mode, gradients off)."""
        record = EpochRecord(epoch)
        cfg = model.config
        outputs = model.outputs_from_spectrogram(model.frontend.normalize(self.logspec)).double().numpy()
        if isinstance(model, TwoStageModel):
            concepts, targets = outputs, (model.head.predict(outputs) if self.head_on else None)
            _correlations(record, "concept_r", cfg.concept_names, self.concepts, concepts)
        else:
            targets = outputs
        if targets is not None:
            _correlations(record, "target_r", cfg.target_names, self.targets, targets)
        if self.head_on:
            figures = {f"head/{name}": fig for name, fig in head_figures(model, concepts).items()}
            record.images.update({tag: figure_image(fig, self.dpi) for tag, fig in figures.items()})
        if self.explained:
            self._clips(record, model)
        return record

    def _clips(self, record: EpochRecord, model: AudioModel) -> None:
        """Each listened clip's map, through a private copy of the network (its gradients stay there), in one
        forward and backward pass: gradient x (input - silence) of the clip's own explained output."""
        from ..explain.attribution import AttributionMaps, SpectrogramNet, band_frequencies, silence
        from ..explain.views_plotting import plot_attribution

        net = SpectrogramNet(model, self.kind).fold_batch_norms()
        cfg, fe, listen = model.config, model.config.frontend, len(self.explained)
        spec = model.frontend.normalize(self.logspec[:listen])
        base = silence(model, spec.shape[-1])
        x = spec.clone().requires_grad_()
        with torch.enable_grad():
            out = net(x)
            (grad,) = torch.autograd.grad(out[torch.arange(listen), self.explained].sum(), x)
        attr = (grad * (spec - base))[:, 0].numpy()  # (clips, bands, frames)
        silent = net(base)[0].double().numpy()
        frames = spec.shape[-1]
        for i, d in enumerate(self.explained):
            maps = AttributionMaps(
                names=[net.names[d]], maps=attr[i:i + 1], spectrogram=self.logspec[i].numpy(),
                frame_times=np.arange(frames) * fe.hop_length / fe.sample_rate,
                band_frequencies=band_frequencies(model),
                outputs=out[i, d:d + 1].detach().double().numpy(), baseline_outputs=silent[d:d + 1],
                method="gradient_x_input", kind=self.kind, source=f"validation clip {i}", model_name=model.name,
                duration=frames * fe.hop_length / fe.sample_rate)
            record.images[f"clip_{i}/attribution"] = figure_image(plot_attribution(maps, net.names[d]), self.dpi)
            if i < len(self.waves):
                from ..explain.listen import split_time_frequency

                part = split_time_frequency(self.waves[i], cfg.sample_rate, attr[i], model.frontend.filterbank.numpy(),
                                            n_fft=fe.n_fft, hop=fe.hop_length, fraction=self.tf_fraction).part
                record.audio[f"clip_{i}/part"] = (part, cfg.sample_rate)


def explanation_callbacks(directory: str | Path, *, per_run: bool = False, **options: Any) -> list[Callback]:
    """``ExplanationLogger`` writing TensorBoard events and ``explanations.jsonl`` into ``directory`` (with
    ``per_run``, ``directory/<run name>``): what ``--log-explanations DIR`` builds."""
    return [ExplanationLogger([TensorBoardWriter(directory, per_run=per_run),
                               MetricsLogWriter(directory, per_run=per_run)], **options)]


# -- figures (matplotlib, imported when drawn) ------------------------------------------------------
def _correlations(record: EpochRecord, prefix: str, names: Sequence[str], truth: np.ndarray | None,
                  predicted: np.ndarray) -> None:
    if truth is None or len(truth) < 2:
        return
    r = pearson_per_column(truth, predicted)
    record.scalars.update({f"{prefix}/{name}": float(v) for name, v in zip(names, r) if np.isfinite(v)})
    if np.isfinite(r).any():
        record.scalars[f"{prefix}/mean"] = float(np.nanmean(r))


def figure_image(fig, dpi: int = 72) -> np.ndarray:
    """(H, W, 3) uint8 pixels of a ``matplotlib.figure.Figure``, drawn with the Agg canvas (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def head_figures(model: TwoStageModel, concepts: np.ndarray) -> dict[str, Any]:
    """``weights`` (linear head) or ``shape_functions`` (GAM), and ``contributions`` over ``concepts``."""
    import matplotlib
    from matplotlib.figure import Figure

    head, cfg = model.head, model.config
    figures = {}
    if isinstance(head, SparseLinearHead):  # the weight table
        table = head.coef_  # (T, K)
        fig = Figure(figsize=(0.7 * len(cfg.concept_names) + 2, 0.35 * len(cfg.target_names) + 1.6))
        ax = fig.subplots()
        limit = float(np.abs(table).max()) or 1.0
        ax.imshow(table, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
        for (t, k), value in np.ndenumerate(table):
            ax.text(k, t, f"{value:.2f}", ha="center", va="center", fontsize=6)
        ax.set_xticks(range(len(cfg.concept_names)), cfg.concept_names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(cfg.target_names)), cfg.target_names, fontsize=7)
        ax.set_title("head weights (target x concept)", fontsize=9)
        fig.tight_layout()
        figures["weights"] = fig
    elif hasattr(head, "shape_function"):  # GAM: one panel per concept, a curve per target
        cols = min(4, len(cfg.concept_names))
        rows = -(-len(cfg.concept_names) // cols)
        fig = Figure(figsize=(3 * cols, 2.2 * rows + 0.6))
        axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
        grid = np.linspace(*head.concept_range, 50)
        for ax, name in zip(axes.flat, cfg.concept_names):
            ax.plot(grid, head.shape_function(name, grid), linewidth=1)
            ax.set_title(name, fontsize=8)
            ax.tick_params(labelsize=7)
        for ax in list(axes.flat)[len(cfg.concept_names):]:
            ax.axis("off")
        axes.flat[0].legend(cfg.target_names, fontsize=6, ncol=2, frameon=False)
        fig.suptitle("GAM shape functions f(concept), one curve per target", fontsize=9)
        fig.subplots_adjust(left=0.05, right=0.98, top=1 - 0.45 / fig.get_figheight(),
                            bottom=0.3 / fig.get_figheight(), hspace=0.45, wspace=0.08)
        figures["shape_functions"] = fig
    terms = head.contributions(concepts)  # (N, T, K)
    cols = min(4, len(cfg.target_names))
    rows = -(-len(cfg.target_names) // cols)
    fig = Figure(figsize=(3 * cols, 2 * rows + 1))
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
    colours = matplotlib.colormaps["tab10"](np.arange(len(cfg.concept_names)) % 10)
    for t, (ax, name) in enumerate(zip(axes.flat, cfg.target_names)):
        boxes = ax.boxplot(terms[:, t, :], widths=0.6, patch_artist=True, flierprops={"markersize": 2},
                           medianprops={"color": "black"})
        for box, colour in zip(boxes["boxes"], colours):
            box.set_facecolor(colour)
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.set_xticks([])
        ax.set_title(name, fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(cfg.target_names):]:
        ax.axis("off")
    k = len(cfg.concept_names)
    fig.legend(boxes["boxes"], cfg.concept_names, loc="lower center", ncol=-(-k // -(-k // 8)), fontsize=7,
               frameon=False)  # rows of at most 8, as even as they go
    fig.suptitle(f"contributions per concept over {len(concepts)} validation clips", fontsize=9)
    # fixed margins: tight_layout on many panels costs more than the rest of the epoch's figures together
    fig.subplots_adjust(left=0.05, right=0.98, top=1 - 0.45 / fig.get_figheight(),
                        bottom=0.75 / fig.get_figheight(), hspace=0.35, wspace=0.08)
    figures["contributions"] = fig
    return figures
