"""Phonocardiogram measurements inside the network: the beat period, and a cardiac-cycle segmenter.

``CardiacPeriodicity`` is parameter-free: the autocorrelation of a low-band energy envelope of the
log spectrogram at the lags of 30-180 beats/min, and soft estimates of where its strongest peak lies,
read out in beats/min on the heart-rate concept's 0-1 range. A CNN with global pooling can count heart
sounds (their density per second), but a count over a few seconds is off by up to a beat at each
edge (several bpm); the autocorrelation's peak follows the mean interval instead. It is the tensor form
of the measurement ``tests/test_heart_sounds.py`` checks the corpus with (the centroid of the
autocorrelation peak of an energy envelope): conv1d, softmax and sums only, so it exports to ONNX.

``PCGBackbone`` puts it beside a CNN: the embedding is the CNN's globally pooled features and the
periodicity features (batch-normalised), concatenated, with no mixing layer, so a concept stays a
linear read-out of pooled local features plus the window's periodicity.

``CardiacCycleSegmenter`` labels every spectrogram frame S1, systole, S2 or diastole (dilated 1-D
convolutions, about 1.3 s of context either side): a learned segmentation, trained on the corpus's
per-beat tables (``training.heart``), that ``explain.cardiac_cycle`` draws under the contributions.

``BeatIntervals`` reads the heart rate as the concept defines it, 60 / the mean interval between S1 onsets,
from a trained (frozen) segmenter's S1 frames: an onset is an S1 frame with no S1 frame in the
``REFRACTORY_SECONDS`` before it, and the rate is (onsets - 1) / (last onset - first onset). An
autocorrelation peak follows the dominant period, which an irregular rhythm smears and an ectopic beat (one
more onset in the same time) shifts; counting onsets follows neither. The ``compact_pcg_beats`` backbone
(``PCGBackbone(..., beats=True)``) carries it, segmenter weights included, so every caller and the ONNX
graph get it, and ``explain.cardiac_cycle`` takes its segmenter from the model.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .config import FrontendConfig
from .frontend import LogFrequencySpectrogram, log_filterbank

#: the periodicity's range, the heart-rate concept's (``datasets.heart_corpus.CONCEPT_RANGES``)
BPM_RANGE = (30.0, 180.0)
#: softmax sharpnesses of the soft peak estimates (on an autocorrelation normalised to 1 at lag 0)
SHARPNESS = (10.0, 30.0, 100.0)
#: S1 frames closer than this to an earlier S1 frame belong to the same S1 (S1 lasts 70-130 ms; at 180 bpm
#: the next one starts 330 ms later). Chosen on the training corpus's validation split (150, 200, 250, 300
#: ms: 98.8, 98.6, 98.3, 96.2% of clean-to-moderate recordings within 5 bpm over the whole recording).
REFRACTORY_SECONDS = 0.15


def band_centres(frontend: FrontendConfig) -> np.ndarray:
    """(bands,) the centre frequency (Hz) of each front-end band: its filter's largest bin."""
    fb = log_filterbank(frontend)
    return fb.argmax(axis=0) * frontend.sample_rate / frontend.n_fft


class CardiacPeriodicity(nn.Module):
    """(B, bands, T) un-normalised log spectrogram -> (B, out_features) periodicity features.

    The envelope is the mean log magnitude of the bands between ``low_hz`` and ``high_hz`` (where S1 and S2
    are), centred on its mean over the window. Its autocorrelation (divided by T, so longer lags, which
    overlap less, weigh less: the beat period wins over its multiples) is normalised to 1 at lag 0 and read
    at ``BPM_RANGE`` every ``step_bpm`` (linear interpolation between lags). Features: those values; for each
    sharpness in ``SHARPNESS``, the heart rate on 0-1 (``BPM_RANGE``) expected under a softmax over lags; the
    autocorrelation at the sharpest estimate and its largest value (how regular the rhythm is)."""

    def __init__(self, frontend: FrontendConfig, *, low_hz: float = 25.0, high_hz: float = 400.0,
                 step_bpm: float = 5.0) -> None:
        super().__init__()
        fps = frontend.sample_rate / frontend.hop_length
        centres = band_centres(frontend)
        chosen = (centres >= low_hz) & (centres <= high_hz)
        if not chosen.any():
            raise ValueError(f"no front-end band between {low_hz} and {high_hz} Hz")
        self.register_buffer("band_weights", torch.as_tensor(chosen / chosen.sum(), dtype=torch.float32))
        self.min_lag = int(np.floor(60.0 * fps / BPM_RANGE[1]))
        self.max_lag = int(np.ceil(60.0 * fps / BPM_RANGE[0]))
        lags = np.arange(self.min_lag, self.max_lag + 1, dtype=np.float64)
        bpm = 60.0 * fps / lags
        self.register_buffer("lag_unit_bpm", torch.as_tensor((bpm - BPM_RANGE[0]) / (BPM_RANGE[1] - BPM_RANGE[0]),
                                                             dtype=torch.float32))
        grid = np.arange(BPM_RANGE[0], BPM_RANGE[1] + 1e-9, step_bpm)
        at = 60.0 * fps / grid - self.min_lag  # fractional index into lags
        interp = np.zeros((len(lags), len(grid)))
        lo = np.clip(np.floor(at).astype(int), 0, len(lags) - 2)
        frac = np.clip(at - lo, 0.0, 1.0)
        interp[lo, np.arange(len(grid))] = 1 - frac
        interp[lo + 1, np.arange(len(grid))] += frac
        self.register_buffer("interp", torch.as_tensor(interp, dtype=torch.float32))
        self.register_buffer("sharpness", torch.as_tensor(SHARPNESS, dtype=torch.float32))
        self.out_features = len(grid) + len(SHARPNESS) + 2
        self.sharpest = len(grid) + len(SHARPNESS) - 1  # the feature of the sharpest soft estimate

    def envelope(self, logspec: torch.Tensor) -> torch.Tensor:
        """(B, bands, T) -> (B, T) centred low-band envelope."""
        env = torch.einsum("bft,f->bt", logspec, self.band_weights)
        return env - env.mean(dim=-1, keepdim=True)

    def autocorrelation(self, env: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, lags) at ``min_lag``..``max_lag``, normalised to 1 at lag 0 (0 for a flat envelope).
        Lags beyond the input overlap nothing and read 0."""
        n = env.shape[-1]
        shifted = F.pad(env, (0, self.max_lag))[:, self.min_lag:].unfold(-1, self.max_lag - self.min_lag + 1, 1)
        acf = (env.unsqueeze(-1) * shifted).sum(1)  # (B, lags): shifted[b, t, j] = env[b, t + min_lag + j]
        return acf / ((env * env).sum(-1, keepdim=True) + 1e-6 * n)

    def forward(self, logspec: torch.Tensor) -> torch.Tensor:
        acf = self.autocorrelation(self.envelope(logspec))
        weights = torch.softmax(acf.unsqueeze(1) * self.sharpness[:, None], dim=-1)  # (B, S, lags)
        rate = (weights * self.lag_unit_bpm).sum(-1)  # (B, S) expected heart rate on 0-1
        at_peak = (weights[:, -1] * acf).sum(-1, keepdim=True)
        return torch.cat([acf @ self.interp, rate, at_peak, acf.amax(dim=-1, keepdim=True)], dim=1)


class PCGBackbone(nn.Module):
    """A CNN (any ``(B, 1, bands, T) -> (B, E)`` module with ``out_features``) beside ``CardiacPeriodicity``
    (and with ``beats``, ``BeatIntervals``, whose segmenter is loaded after construction: ``load_segmenter``).

    The periodicity reads the un-normalised log spectrogram: ``band_mean``/``band_std`` undo the front-end's
    normalisation and are set with it (``AudioModel.set_input_normalization``)."""

    def __init__(self, cnn: nn.Module, frontend: FrontendConfig, *, beats: bool = False) -> None:
        super().__init__()
        self.cnn = cnn
        self.periodicity = CardiacPeriodicity(frontend)
        n_bands = LogFrequencySpectrogram(frontend).n_bands
        self.register_buffer("band_mean", torch.zeros(n_bands))
        self.register_buffer("band_std", torch.ones(n_bands))
        self.periodicity_norm = nn.BatchNorm1d(self.periodicity.out_features)
        self.out_features = cnn.out_features + self.periodicity.out_features
        if beats:
            self.beats = BeatIntervals(frontend)
            self.beats_norm = nn.BatchNorm1d(self.beats.out_features)
            self.out_features += self.beats.out_features

    @torch.no_grad()
    def set_input_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.band_mean.copy_(torch.as_tensor(mean, dtype=self.band_mean.dtype).expand_as(self.band_mean))
        self.band_std.copy_(torch.as_tensor(std, dtype=self.band_std.dtype).clamp_min(1e-6).expand_as(self.band_std))

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        logspec = spec[:, 0] * self.band_std[:, None] + self.band_mean[:, None]
        periodicity = self.periodicity(logspec)
        parts = [self.cnn(spec), self.periodicity_norm(periodicity)]
        if hasattr(self, "beats"):
            parts.append(self.beats_norm(self.beats(logspec, fallback=periodicity[:, self.periodicity.sharpest])))
        return torch.cat(parts, dim=1)


class CardiacCycleSegmenter(nn.Module):
    """Waveform -> (B, 4, frames) logits of the states S1, systole, S2, diastole per spectrogram frame.

    Its own front-end (the model's settings and training statistics), a 1-D convolution over the bands, then
    residual dilated convolutions (dilations 1 ... 32: about 1.3 s of context either side at 100 frames/s,
    more than a cycle at 45 bpm), so S1 and S2 are told apart by where they sit in the rhythm."""

    n_states = 4

    def __init__(self, frontend: FrontendConfig, *, channels: int = 32, dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32)):
        super().__init__()
        self.frontend = LogFrequencySpectrogram(frontend)
        n_bands = self.frontend.n_bands
        self.inp = nn.Conv1d(n_bands, channels, 5, padding=2)
        self.blocks = nn.ModuleList(nn.Conv1d(channels, channels, 3, padding=d, dilation=d) for d in dilations)
        self.norms = nn.ModuleList(nn.BatchNorm1d(channels) for _ in dilations)
        self.out = nn.Conv1d(channels, self.n_states, 1)
        self.settings = {"channels": int(channels), "dilations": [int(d) for d in dilations]}

    def logits_from_spectrogram(self, spec: torch.Tensor) -> torch.Tensor:
        """(B, 1, bands, T) normalised spectrogram -> (B, 4, T) state logits."""
        h = F.relu(self.inp(spec[:, 0]))
        for conv, norm in zip(self.blocks, self.norms):
            h = h + F.relu(norm(conv(h)))
        return self.out(h)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.logits_from_spectrogram(self.frontend(wave))

    @torch.no_grad()
    def states(self, samples: np.ndarray) -> np.ndarray:
        """(frames,) the most likely state index per frame of one mono recording at the front-end's rate."""
        was = self.training
        self.eval()
        out = self(torch.as_tensor(np.asarray(samples, dtype=np.float32))[None]).argmax(1)[0].numpy()
        self.train(was)
        return out


class BeatIntervals(nn.Module):
    """(B, bands, T) un-normalised log spectrogram -> (B, 3): the heart rate on the concept's 0-1 range
    (``BPM_RANGE``) from the S1 onsets of a frozen ``CardiacCycleSegmenter`` (module docstring), the onsets per
    minute on the same range, and whether there were two onsets or more. With fewer than two (a window
    shorter than a beat), the rate is ``fallback`` (the periodicity's estimate). The segmenter keeps its own
    normalisation and stays in eval mode and out of training (its weights come from ``train_segmenter``)."""

    out_features = 3

    def __init__(self, frontend: FrontendConfig, *, refractory_seconds: float = REFRACTORY_SECONDS) -> None:
        super().__init__()
        self.segmenter = CardiacCycleSegmenter(frontend)
        self.segmenter.requires_grad_(False)
        self.segmenter.eval()
        self.frames_per_second = frontend.sample_rate / frontend.hop_length
        self.refractory = max(1, int(round(refractory_seconds * self.frames_per_second)))

    def train(self, mode: bool = True) -> "BeatIntervals":
        super().train(mode)
        self.segmenter.eval()  # frozen: its batch norm keeps the statistics it was trained with
        return self

    def load_segmenter(self, segmenter: "CardiacCycleSegmenter") -> None:
        """Copy a trained segmenter's weights (and its front-end's normalisation) in."""
        self.segmenter.load_state_dict(segmenter.state_dict())

    def onsets(self, logspec: torch.Tensor) -> torch.Tensor:
        """(B, bands, T) -> (B, T) 1 at each S1 onset (no onset at frame 0: that S1 may have begun before)."""
        logits = self.segmenter.logits_from_spectrogram(self.segmenter.frontend.normalize(logspec))
        s1 = (logits.argmax(dim=1) == 0).to(logspec.dtype)
        before = F.max_pool1d(F.pad(s1, (self.refractory, 0))[:, None, :-1], self.refractory, 1)[:, 0]
        first_frame = torch.arange(s1.shape[-1], device=s1.device) == 0
        return s1 * (1 - before) * (~first_frame).to(s1.dtype)

    def forward(self, logspec: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            onsets = self.onsets(logspec)
            n = onsets.sum(dim=-1)
            t = torch.arange(onsets.shape[-1], device=onsets.device, dtype=onsets.dtype)
            last = (onsets * t).amax(dim=-1)
            first = (t + (1 - onsets) * onsets.shape[-1]).amin(dim=-1)
            bpm = 60.0 * self.frames_per_second * (n - 1) / (last - first).clamp_min(1.0)
            low, high = BPM_RANGE
            two = n >= 2
            rate = torch.where(two, ((bpm - low) / (high - low)).clamp(0.0, 1.0), fallback)
            per_minute = (60.0 * self.frames_per_second * n / onsets.shape[-1] - low) / (high - low)
            return torch.stack([rate, per_minute, two.to(rate.dtype)], dim=1)
