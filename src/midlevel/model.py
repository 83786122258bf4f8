"""TwoStageModel: waveform -> front-end -> backbone -> K named concepts -> additive head -> T targets.

Tracks longer than one window are cut into windows (10 s with a 5 s hop by default; the last
window is aligned to the end of the track so no audio is skipped). A track's concepts are the
mean of its windows' concepts and its targets are the head applied to those mean concepts, so
``targets == intercept + contributions.sum(concepts)`` holds exactly at the track level too.
Tracks shorter than one window are zero-padded to one window and flagged ``padded``.

Inputs outside what a model knows are flagged, never silent: each window's concepts are clipped to
``concept_scale`` before they are averaged and the head is applied (flag ``concepts_out_of_scale``,
raw values in ``Prediction.raw_concepts`` and a note), so the terms are computed on the clipped
concepts and stay an exact decomposition; targets outside ``target_scale`` are flagged
``targets_out_of_scale`` but not clipped, since clipping a sum would break it. The input's own
notes and flags (level, truncation: ``midlevel.audio``) and the out-of-distribution score of a
calibrated model (``midlevel.ood``) are copied into every prediction.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from .audio import Audio, AudioStream, AudioSummary, WholeFileNeeded, load_audio, pad_to_length
from .backbones import build_backbone
from .checkpoint import ModelLoadError, read_config, read_weights, save_model_dir, state_dict_mismatch
from .config import ConfigError, ModelConfig
from .errors import MidlevelError
from .frontend import build_frontend
from .heads import AdditiveHead, build_head
from .ioutil import release_freed_memory
from .matmul_dft import frames_by_slices
from .numerics import eval_mode, flush_denormals
from .ood import OODCalibration, describe, load_ood, sync_ood
from .results import Explanation, Prediction


class NoConceptsError(MidlevelError, ValueError):
    """A call that needs concepts (``explain``) was made on a black box; the message names its twin."""


def window_starts_tensor(n_samples: int | torch.SymInt, window: int, hop: int,
                         device: torch.device | None = None) -> torch.Tensor:
    """Start sample of each window (the one definition every path uses, exported graph included).

    Written with symbolic sizes only (no Python branch on the length), so one exported graph serves
    every length: n = 1 + ceil(max(S - window, 0) / hop), start_i = min(i * hop, S - window) clamped at
    0; the last window is end-aligned so the whole track is covered, and a short track has one window
    at 0 (zero padding supplies what it lacks).
    """
    n_windows = 1 + (torch.sym_max(n_samples - window, 0) + hop - 1) // hop
    return (torch.arange(n_windows, device=device) * hop).clamp(max=n_samples - window).clamp(min=0)


def window_starts(n_samples: int, window: int, hop: int) -> list[int]:
    """``window_starts_tensor`` as a list of ints."""
    return window_starts_tensor(n_samples, window, hop).tolist()


def slice_windows(wave: torch.Tensor, window: int, hop: int) -> torch.Tensor:
    """(B, S) waveforms -> (B, W, window): the windows ``window_starts_tensor`` places, equal to indexing the
    zero-padded track at those starts (tests), cut without indices: the windows that start at ``i * hop`` by
    ``frames_by_slices`` (block copies), the last (end-aligned) by one slice. The exported graph then has no
    per-sample ``Gather`` over the track, which onnxruntime runs as a copy of every index. Symbolic sizes only,
    so one graph serves every length."""
    padded = nn.functional.pad(wave, (0, window + hop))
    n_samples = wave.shape[-1]
    regular = (torch.sym_max(n_samples - window, 0) + hop - 1) // hop  # windows that start at i * hop, the last aside
    last_start = torch.sym_max(torch.sym_min(regular * hop, n_samples - window), 0)
    return torch.cat([frames_by_slices(padded, window, hop, n_frames=regular),
                      padded[:, None, last_start:last_start + window]], dim=1)


def window_chunks(blocks: Iterable[np.ndarray], window: int, hop: int, batch: int
                  ) -> Iterator[tuple[np.ndarray, list[int]]]:
    """A track given as consecutive sample blocks -> ``(span, starts)`` for each run of ``batch`` consecutive
    windows in ``window_starts`` order (the last run shorter): ``span`` holds the samples the run covers (zero
    padded when the whole track is shorter than a window), ``starts`` each window's start within it. A run is
    given as soon as its samples have arrived, so at most a run's span and a block are held, not the track.

    Window ``i`` starts at ``i * hop`` while ``i * hop + window`` is short of the track's end; the last one is
    end-aligned (``window_starts_tensor``), so only the runs after the stream's end wait for its length."""
    pending: list[np.ndarray] = []  # the samples ``base:seen``, as they came
    base = seen = done = 0  # first held sample, samples seen, windows given
    for block in blocks:
        pending.append(block)
        seen += len(block)
        while seen > (done + batch - 1) * hop + window:  # the next run's windows all start at i * hop
            lo = done * hop
            yield _samples(pending, base, lo, lo + (batch - 1) * hop + window), [i * hop for i in range(batch)]
            done += batch
            # the end-aligned last window may start up to a hop before ``done * hop``: keep from there
            keep = max(done - 1, 0) * hop
            pending, base = [_samples(pending, base, keep, seen)], keep
    starts = window_starts(seen, window, hop)[done:]
    tail = _samples(pending, base, base, seen)
    if seen < window:  # one window at 0, zero padded (base is 0)
        tail, _ = pad_to_length(tail, window)
    for i in range(0, len(starts), batch):
        run = starts[i:i + batch]
        yield tail[run[0] - base:run[-1] - base + window], [s - run[0] for s in run]


def _samples(blocks: list[np.ndarray], base: int, lo: int, hi: int) -> np.ndarray:
    """Samples ``lo:hi`` of the track whose blocks, from sample ``base`` on, are ``blocks``: a view where one
    block holds them, else a copy."""
    pieces, at = [], base
    for block in blocks:
        a, b = max(lo - at, 0), min(hi - at, len(block))
        if a < b:
            pieces.append(block[a:b])
        at += len(block)
    if len(pieces) == 1:
        return pieces[0]
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


def _one_track(samples: np.ndarray) -> torch.Tensor:
    """A decoded track as a (1, S) float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))[None]


@dataclass(frozen=True)
class TrackRun:
    """One track through the network: ``track_outputs`` (float64, no batch axis), each window's outputs before
    clipping (W, D), and the embedding averaged over the windows (E,), which the out-of-distribution score reads."""

    outputs: tuple[np.ndarray, ...]
    raw_windows: np.ndarray
    mean_embedding: torch.Tensor


def _outside(names: list[str], values: np.ndarray, scale: tuple[float, float]) -> str:
    """"name value, ..." for the values outside ``scale``."""
    return ", ".join(f"{n} {v:.3g}" for n, v in zip(names, values) if not scale[0] <= v <= scale[1])


def class_probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax of a classifier's logits (float64, stable)."""
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def stream_windows(samples: np.ndarray, window: int, hop: int, batch_size: int) -> Iterator[np.ndarray]:
    """(B, window) float32 batches covering the track, in ``window_starts`` order (short tracks padded)."""
    samples, _ = pad_to_length(samples, window)
    starts = window_starts(len(samples), window, hop)
    for i in range(0, len(starts), batch_size):
        yield np.stack([samples[s:s + window] for s in starts[i:i + batch_size]])


class AudioModel(nn.Module):
    """What every zoo model shares: config, front-end, backbone, windowing, persistence."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.frontend = build_frontend(config.frontend)
        self.backbone = build_backbone(config.backbone, config.frontend)
        #: out-of-distribution calibration (``ood.safetensors`` beside the weights); None: no score
        self.ood: OODCalibration | None = None

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
            again = load_audio(audio.samples, self.config.sample_rate, source_sample_rate=audio.sample_rate,
                               name=audio.source, check_level=False)  # checked when it was loaded
            return replace(again, notes=audio.notes, flags=audio.flags)
        return load_audio(audio, self.config.sample_rate, source_sample_rate=sample_rate)

    def outputs_from_spectrogram(self, spec: torch.Tensor) -> torch.Tensor:
        """(B, 1, bands, frames) -> (B, D): what is averaged over a track's windows."""
        raise NotImplementedError

    def outputs_from_embedding(self, embedding: torch.Tensor) -> torch.Tensor:
        """(..., E) backbone outputs -> (..., D): the layer after the backbone."""
        raise NotImplementedError

    def clip_outputs(self, outputs: torch.Tensor) -> torch.Tensor:
        """Window outputs as a track may use them: unchanged here (a black box's targets are not clipped)."""
        return outputs

    def window_outputs(self, wave: torch.Tensor, *, chunk: int | None = None, window: int | None = None,
                       hop: int | None = None) -> torch.Tensor:
        """(B, S) waveforms -> (B, W, D): ``outputs_from_spectrogram`` of each window (the model's own
        windowing unless ``window``/``hop`` are given), not clipped. ``chunk`` windows go through the network
        at a time, so memory does not grow with the track beyond the audio itself; ``None`` (the exported
        graph) runs all at once, with symbolic shapes only."""
        return self._per_window(wave, self.outputs_from_spectrogram, chunk=chunk, window=window, hop=hop)

    def _per_window(self, wave: torch.Tensor, network: Callable[[torch.Tensor], torch.Tensor], *,
                    chunk: int | None, window: int | None = None, hop: int | None = None) -> torch.Tensor:
        """``network`` (spectrograms (N, 1, bands, frames) -> (N, D)) of each window, (B, W, D)."""
        window = window or self.config.window_samples
        hop = hop or self.config.hop_samples
        n_samples = wave.shape[-1]
        if chunk is None:
            windows = slice_windows(wave, window, hop)
            batch, n_windows, _ = windows.shape
            spec = self.frontend(windows.reshape(batch * n_windows, window))
            return network(spec).reshape(batch, n_windows, -1)
        padded = wave if n_samples >= window else nn.functional.pad(wave, (0, window - n_samples))
        starts = window_starts_tensor(n_samples, window, hop, wave.device)
        parts = []
        for i in range(0, len(starts), chunk):
            part = starts[i:i + chunk].tolist()
            # each STFT frame that overlapping windows share computed once (equal to window by window)
            spec = self.frontend.window_spectrograms(padded, part, window)
            parts.append(network(spec).reshape(wave.shape[0], len(part), -1))
            release_freed_memory()
        return torch.cat(parts, dim=1)

    def track_outputs(self, wave: torch.Tensor, *, chunk: int | None = None) -> tuple[torch.Tensor, ...]:
        """THE track algorithm, shared by ``predict``, ``explain`` and the ONNX graph: (B, S) waveforms ->
        the track's outputs (``TrackGraph.output_names`` order; see the subclasses)."""
        return self.track_from_windows(self.window_outputs(wave, chunk=chunk))

    def track_from_windows(self, raw: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The windows' unclipped outputs (B, W, D) -> the track's outputs (see the subclasses)."""
        raise NotImplementedError

    def joint_from_spectrogram(self, spec: torch.Tensor) -> torch.Tensor:
        """(N, 1, bands, frames) -> (N, E + D): the backbone's embedding and the outputs that follow it, from one
        pass (what a track's checks and outputs need of each window; ``midlevel.onnx_runtime`` exports it)."""
        embedding = self.backbone(spec)
        return torch.cat([embedding, self.outputs_from_embedding(embedding)], dim=-1)

    def _run_track(self, samples: np.ndarray | Iterable[np.ndarray], batch_size: int,
                   window_network: Callable[[torch.Tensor], torch.Tensor] | None = None) -> TrackRun:
        """``track_outputs`` of one track in eval mode, with what the checks need (``TrackRun``). ``samples``: the
        decoded track, or its consecutive blocks (an ``AudioStream``), which give the same result bit for bit
        (``window_chunks``). ``window_network`` computes ``joint_from_spectrogram`` elsewhere
        (``midlevel.onnx_runtime``). Denormals are flushed around the network only, so a stream's decoding
        computes as ``load_audio``'s does."""
        blocks = [samples] if isinstance(samples, np.ndarray) else samples
        network = window_network or self.joint_from_spectrogram
        width, cfg = self.backbone.out_features, self.config
        parts = []
        with torch.inference_mode(), eval_mode(self):
            for span, starts in window_chunks(blocks, cfg.window_samples, cfg.hop_samples, batch_size):
                with flush_denormals():
                    # each STFT frame that overlapping windows share computed once (equal to window by window)
                    parts.append(network(self.frontend.window_spectrograms(_one_track(span), starts,
                                                                           cfg.window_samples)))
                release_freed_memory()
            joint = torch.cat(parts)[None]
            raw = joint[..., width:]
            with flush_denormals():
                outputs = self.track_from_windows(raw)
        return TrackRun(tuple(o[0].double().numpy() for o in outputs), raw[0].double().numpy(),
                        joint[0, :, :width].double().mean(dim=0))

    def _read_and_run(self, audio: Any, sample_rate: int | None, batch_size: int,
                      window_network: Callable[[torch.Tensor], torch.Tensor] | None) -> tuple[AudioSummary, TrackRun]:
        """``read_audio`` then ``_run_track``; a file is decoded as the windows consume it (``AudioStream``), so
        a long recording never sits in memory whole. Same result as reading it first, bit for bit."""
        if isinstance(audio, (str, os.PathLike)) and sample_rate is None:
            stream = AudioStream(audio, self.config.sample_rate)
            try:
                run = self._run_track(stream, batch_size, window_network)
                return stream.summary(), run
            except WholeFileNeeded:
                pass  # load_audio reads such a file whole
        clip = self.read_audio(audio, sample_rate=sample_rate)
        return clip.summary(), self._run_track(clip.samples, batch_size, window_network)

    def track_embedding(self, samples: np.ndarray, batch_size: int = 8) -> np.ndarray:
        """(E,) float64: the backbone's output averaged over the track's windows (``midlevel.ood``)."""
        return self._run_track(samples, batch_size).mean_embedding.numpy()

    @torch.inference_mode()
    @flush_denormals()
    def outputs_per_window(self, samples: np.ndarray, window: int, hop: int, *, batch_size: int = 8) -> np.ndarray:
        """``outputs_from_spectrogram`` of each window of any length and hop, (W, D), in eval mode and clipped
        as a track's windows are (the views' finer timelines)."""
        with eval_mode(self):
            outputs = self.window_outputs(_one_track(samples), chunk=batch_size, window=window, hop=hop)
            return self.clip_outputs(outputs)[0].double().numpy()

    def _checks(self, clip: AudioSummary, run: TrackRun, targets: np.ndarray, concept_note: str | None = None
                ) -> dict[str, Any]:
        """notes, extra_flags and ood_score of a prediction: the input's own, then the outputs' (module docstring)."""
        cfg = self.config
        notes = [*cfg.metadata.get("notes", []), *clip.notes]
        flags = list(clip.flags)
        if concept_note is not None:
            flags.append("concepts_out_of_scale")
            notes.append(concept_note)
        low, high = cfg.target_scale
        if cfg.task == "regression" and np.any((targets < low) | (targets > high)):  # logits have no scale
            flags.append("targets_out_of_scale")
            why = "so that each stays the sum of its terms" if cfg.kind == "two_stage" else "as the model computed them"
            notes.append(f"targets outside their {low:g}-{high:g} scale (kept, {why}): "
                         f"{_outside(list(cfg.target_names), targets, cfg.target_scale)}")
        score = None
        if self.ood is not None:
            score = self.ood.score(run.mean_embedding)
            if score > 1.0:
                flags.append("out_of_distribution")
                notes.append(describe(self.ood, score))
        return {"notes": notes, "extra_flags": flags, "ood_score": score,
                "probabilities": class_probabilities(targets) if cfg.task == "classification" else None}

    def _window_seconds(self, n_samples: int) -> np.ndarray:
        cfg = self.config
        return np.asarray(window_starts(n_samples, cfg.window_samples, cfg.hop_samples)) / cfg.sample_rate

    def predict(self, audio: Any, *, sample_rate: int | None = None, batch_size: int = 8,
                window_network: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Prediction:
        raise NotImplementedError

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (atomically; sha256 recorded), and ``ood.safetensors``
        when the model has a calibration of these weights (one left there for other weights is removed)."""
        path = save_model_dir(directory, self.config, self.state_dict())
        sync_ood(path, self.ood, read_config(path)[1]["weights_sha256"])
        return path

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, expected_sha256: str | None = None,
                        with_ood: bool = True) -> "AudioModel":
        """Rebuild from a folder, refusing weights whose sha256 differs from the recorded one; with its
        out-of-distribution calibration when there is one (``with_ood=False``: ignored, e.g. to recalibrate)."""
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
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shapes that do not fit the config: one line naming the files
            problem = state_dict_mismatch(directory, exc)
            if problem is None:
                raise
            raise problem from None
        if missing or unexpected:
            raise ModelLoadError(f"{Path(directory) / 'model.safetensors'}: does not match config.json "
                                 f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
        model.ood = load_ood(directory, recorded) if with_ood else None
        # convolution weights in channels-last order: oneDNN's CPU kernels run the compact CNN about 1.2x
        # faster so (same results to float rounding; saving writes contiguous tensors, the sha256 is unchanged)
        return model.to(memory_format=torch.channels_last).eval()


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
        """(B, samples) -> concepts (B, K), targets (B, T), contributions (B, T, K), each row one window as
        a track's windows are computed: concepts clipped to ``concept_scale`` (training uses the unclipped
        ``concepts_from_spectrogram``, whose gradient a clip would stop)."""
        concepts = self.clip_outputs(self.concepts_from_waveform(wave))
        contributions = self.head.contributions(concepts)
        targets = contributions.sum(dim=-1) + self.head.intercept
        return concepts, targets, contributions

    def clip_outputs(self, outputs: torch.Tensor) -> torch.Tensor:
        """Concepts clipped to ``concept_scale``: the head was fitted on ratings within it, and a GAM's shape
        functions (or a linear term) extrapolate beyond it without bound."""
        low, high = self.config.concept_scale
        return outputs.clamp(low, high)

    def track_from_windows(self, raw: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, W, K) -> concepts (B, K), targets (B, T), contributions (B, T, K), window_concepts (B, W, K).

        Each window's concepts are clipped to ``concept_scale``; a track's concepts are the mean of its
        windows' and the head is applied to that mean, so ``targets == intercept + contributions.sum(-1)``
        holds for the whole track, for every head (a GAM is not linear, so averaging per-window
        contributions would not be the track's contribution).
        """
        per_window = self.clip_outputs(raw)
        concepts = per_window.mean(dim=1)
        contributions = self.head.contributions(concepts)
        targets = contributions.sum(dim=-1) + self.head.intercept
        return concepts, targets, contributions, per_window

    # -- audio in, results out ---------------------------------------------------------------
    def _concept_note(self, raw_windows: np.ndarray) -> str | None:
        """The note on concepts that were clipped, None when none was: each at its farthest-out window,
        the value that was clipped most (for one window, the track's raw value)."""
        low, high = self.config.concept_scale
        if not np.any((raw_windows < low) | (raw_windows > high)):
            return None
        far = np.abs(raw_windows - (low + high) / 2).argmax(axis=0)
        raw = raw_windows[far, np.arange(raw_windows.shape[1])]
        where = "" if len(raw_windows) == 1 else " (raw values, each at its farthest-out window)"
        return (f"concepts outside their {low:g}-{high:g} scale, clipped to it before the head: "
                f"{_outside(list(self.config.concept_names), raw, self.config.concept_scale)}{where}")

    def explain(self, audio: Any, *, sample_rate: int | None = None, batch_size: int = 8,
                window_network: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Explanation:
        """Concepts, targets and each concept's exact contribution to each target. ``window_network``: an
        ``midlevel.onnx_runtime.OnnxWindowNetwork`` of this model runs the per-window network in onnxruntime."""
        clip, run = self._read_and_run(audio, sample_rate, batch_size, window_network)
        concepts, _, contributions, per_window = run.outputs
        intercept = self.head.intercept.detach().double().numpy()
        # summed in float64 from the reported terms, so the decomposition is exact to float64 rounding
        targets = contributions.sum(axis=1) + intercept
        checks = self._checks(clip, run, targets, self._concept_note(run.raw_windows))
        return Explanation(
            source=clip.source, concept_names=list(self.config.concept_names),
            target_names=list(self.config.target_names), concepts=concepts,
            targets=targets, window_concepts=per_window,
            window_starts=self._window_seconds(clip.n_samples), duration=clip.duration,
            padded=clip.n_samples < self.config.window_samples, silent=clip.silent,
            model_name=self.name, raw_concepts=run.raw_windows.mean(axis=0), **checks,
            contributions=contributions, intercept=intercept,
        )

    def predict(self, audio: Any, *, sample_rate: int | None = None, batch_size: int = 8,
                window_network: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Prediction:
        """Track-level concepts and targets (``explain`` without the decomposition)."""
        e = self.explain(audio, sample_rate=sample_rate, batch_size=batch_size, window_network=window_network)
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
        with torch.no_grad():  # ratings start at the scale's middle; logits at 0 (every class alike)
            self.target_layer.bias.fill_(sum(config.target_scale) / 2 if config.task == "regression" else 0.0)

    def outputs_from_spectrogram(self, spec: torch.Tensor) -> torch.Tensor:
        return self.target_layer(self.backbone(spec))

    def outputs_from_embedding(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.target_layer(embedding)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> targets (B, T)."""
        return self.outputs_from_spectrogram(self.frontend(wave))

    def track_from_windows(self, raw: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, W, T) -> targets (B, T), the mean of the windows' targets, and window_targets (B, W, T)."""
        return raw.mean(dim=1), raw

    def predict(self, audio: Any, *, sample_rate: int | None = None, batch_size: int = 8,
                window_network: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Prediction:
        """Track-level targets; a black box has no concepts, so ``concepts`` is empty. ``window_network``: as
        ``TwoStageModel.explain``'s."""
        clip, run = self._read_and_run(audio, sample_rate, batch_size, window_network)
        targets, per_window = run.outputs
        return Prediction(
            source=clip.source, concept_names=[], target_names=list(self.config.target_names),
            concepts=np.zeros(0), targets=targets, window_concepts=np.zeros((len(per_window), 0)),
            window_starts=self._window_seconds(clip.n_samples), duration=clip.duration,
            padded=clip.n_samples < self.config.window_samples, silent=clip.silent,
            model_name=self.name, **self._checks(clip, run, targets),
        )

    def predict_targets(self, audio: Any, *, sample_rate: int | None = None, batch_size: int = 8) -> np.ndarray:
        """The track's targets, (T,)."""
        return self.predict(audio, sample_rate=sample_rate, batch_size=batch_size).targets

    def explain(self, audio: Any = None, **_: Any) -> Explanation:
        """Refused: a black box has no concepts to decompose its output into."""
        twin = self.config.metadata.get("explainable_twin")
        raise NoConceptsError(
            f"{self.name} is a black box: it has no concepts, so no intrinsic explanation; "
            + (f"its explainable twin is {twin} (`midlevel explain --model {twin}`)" if twin else
               "use an explainable model (`midlevel models`)")
            + f", or explain it post hoc with `midlevel explain --baseline shap --baseline-model {self.name}`")


MODEL_KINDS: dict[str, type[AudioModel]] = {"two_stage": TwoStageModel, "black_box": BlackBoxModel}
