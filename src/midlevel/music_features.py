"""Differentiable pitch-class and rhythm descriptors computed inside the network.

A small CNN with global average pooling hears timbre and texture well (dissonance, articulation,
rhythm complexity) but not relations between pitches or between onsets: mode, key clarity,
modulations, melodic steps, a steady pulse. Those are what music theory measures with pitch-class
profiles, interval statistics and onset periodicity, so this module computes those measurements
from the same normalised log spectrogram, as tensor operations (trainable where it helps, exported
to ONNX with the rest of the network). No library offers them as layers: librosa's chroma and
tempogram are numpy functions outside the graph, so they could neither be trained jointly nor
exported, which is why they are written here.

Every feature is invariant to transposition (a rotation of the 12 pitch classes) by construction:
key and interval statistics are taken as a maximum over rotations or as functions of the interval
between two pitch classes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .config import FrontendConfig
from .frontend import log_filterbank

#: Krumhansl-Kessler probe-tone profiles (C major, C minor): the initial key templates.
KK_MAJOR = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
KK_MINOR = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)
#: Triads on C: the initial chord templates.
MAJOR_TRIAD = (1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0)
MINOR_TRIAD = (1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0)


def band_centres(cfg: FrontendConfig) -> np.ndarray:
    """Centre frequency (Hz) of each filterbank band: its filter's weighted mean bin frequency."""
    fb = log_filterbank(cfg)
    bin_freqs = np.arange(fb.shape[0]) * cfg.sample_rate / cfg.n_fft
    return (fb * bin_freqs[:, None]).sum(0) / np.maximum(fb.sum(0), 1e-12)


def chroma_matrix(cfg: FrontendConfig, *, fmin: float = 130.0, fmax: float = 5000.0,
                  width: float = 0.4) -> np.ndarray:
    """(bands, 12) soft assignment of bands to pitch classes (C = 0).

    Each band inside [fmin, fmax] spreads over the pitch classes with a Gaussian of ``width``
    semitones around its centre; below ``fmin`` FFT bins are more than a semitone apart, above
    ``fmax`` there is little pitched energy, so those bands get no weight.
    """
    centres = band_centres(cfg)
    midi = 69.0 + 12.0 * np.log2(np.maximum(centres, 1e-6) / 440.0)
    pcs = np.arange(12)
    diff = (midi[:, None] - pcs[None, :] + 6.0) % 12.0 - 6.0  # circular distance in semitones
    weights = np.exp(-0.5 * (diff / width) ** 2)
    weights /= weights.sum(1, keepdims=True)
    weights[(centres < fmin) | (centres > fmax)] = 0.0
    return weights.astype(np.float32)


def band_groups(cfg: FrontendConfig, edges: tuple[float, ...] = (200.0, 2000.0)) -> np.ndarray:
    """(bands, groups) 0/1 matrix grouping bands into low / mid / high for onset envelopes."""
    centres = band_centres(cfg)
    group = np.searchsorted(np.asarray(edges), centres)
    out = np.zeros((len(centres), len(edges) + 1), dtype=np.float32)
    out[np.arange(len(centres)), group] = 1.0
    return out / out.sum(0, keepdims=True)


def all_rotations(templates: torch.Tensor) -> torch.Tensor:
    """(k, 12) -> (k, 12 rotations, 12): row r of template j is template j transposed up r semitones."""
    idx = (torch.arange(12)[None, :] - torch.arange(12)[:, None]) % 12  # [r, p] = (p - r) mod 12
    return templates[:, idx]


def pitch_class_fold(n_pitches: int, low_pitch: int) -> torch.Tensor:
    """(n_pitches, 12) 0/1: row ``p`` (MIDI pitch ``low_pitch + p``) -> its pitch class (C = 0)."""
    fold = torch.zeros(n_pitches, 12)
    fold[torch.arange(n_pitches), (torch.arange(n_pitches) + low_pitch) % 12] = 1.0
    return fold


def centred_unit(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    x = x - x.mean(dim, keepdim=True)
    return x / (x.norm(dim=dim, keepdim=True) + 1e-6)


def shifted_correlation(a: torch.Tensor, b: torch.Tensor, max_shift: int) -> torch.Tensor:
    """(batch, n, t) x (batch, n, t) -> (batch, 2 max_shift + 1): for s = -max_shift..max_shift, the mean
    over t of sum_p a[p, t] * b[p + s, t] (zero where p + s is outside 0..n-1).

    Computed as the (n, n) Gram matrix over time, whose s-th diagonal is summed by one matrix product:
    two matmuls instead of a slice per shift (which made backward passes slow)."""
    n, t = a.shape[1], a.shape[-1]
    gram = torch.einsum("bpt,bqt->bpq", a, b) / t
    idx = torch.arange(n, device=a.device)
    offset = idx[None, :] - idx[:, None]  # [p, q] = q - p
    shifts = torch.arange(-max_shift, max_shift + 1, device=a.device)
    select = (offset[..., None] == shifts).to(a.dtype).reshape(n * n, len(shifts))
    return gram.reshape(gram.shape[0], n * n) @ select


class PitchClassFeatures(nn.Module):
    """Normalised log spectrogram (batch, 1, bands, frames) -> transposition-invariant tonal features.

    - interval profiles: for frame lags 0 (simultaneous: harmony) and ``lags`` (successive: melody),
      the energy-weighted histogram of the 12 intervals between pitch classes;
    - key fit: correlation of the clip's pitch-class profile with trainable key templates
      (initialised to Krumhansl-Kessler major/minor), maximised over the 12 transpositions, for the
      whole input and for local windows (mean and minimum over windows), and the lowest similarity
      between a local profile and the whole input's (drops after a modulation);
    - chord fit: per local frame group, the best-fitting transposition of trainable chord templates
      (initialised to major and minor triads), averaged over time.
    """

    def __init__(self, cfg: FrontendConfig, *, lags: tuple[int, ...] = (4, 8, 16), n_keys: int = 6,
                 n_chords: int = 6, local_frames: int = 104, chord_frames: int = 16) -> None:
        super().__init__()
        self.register_buffer("chroma", torch.from_numpy(chroma_matrix(cfg)))
        self.lags = tuple(int(v) for v in lags)
        self.local_frames = int(local_frames)
        self.chord_frames = int(chord_frames)
        gen = torch.Generator().manual_seed(0)
        keys = torch.rand(n_keys, 12, generator=gen)
        keys[0], keys[1] = torch.tensor(KK_MAJOR), torch.tensor(KK_MINOR)
        chords = torch.rand(n_chords, 12, generator=gen) * 0.3
        chords[0], chords[1] = torch.tensor(MAJOR_TRIAD, dtype=torch.float32), torch.tensor(MINOR_TRIAD, dtype=torch.float32)
        self.key_templates = nn.Parameter(keys)
        self.chord_templates = nn.Parameter(chords)
        self.out_features = 12 * (1 + len(self.lags)) + 3 * n_keys + 2 + 2 * n_chords

    def pitch_classes(self, spec: torch.Tensor) -> torch.Tensor:
        """(batch, 12, frames), each frame summing to 1 (silence spread evenly)."""
        energy = F.relu(spec[:, 0])  # above the training set's mean level of each band
        pcs = torch.einsum("bft,fp->bpt", energy, self.chroma)
        return (pcs + 1e-4) / (pcs.sum(1, keepdim=True) + 12e-4)

    @staticmethod
    def interval_profile(pcs: torch.Tensor, lag: int) -> torch.Tensor:
        """(batch, 12): mean over t of sum_p pcs[p, t] * pcs[p + s, t + lag] for each interval s."""
        a = pcs[..., : pcs.shape[-1] - lag] if lag else pcs
        b = pcs[..., lag:]
        rolled = torch.stack([torch.roll(b, shifts=-s, dims=1) for s in range(12)], dim=1)  # (b, 12s, 12p, t)
        return (a.unsqueeze(1) * rolled).sum(2).mean(-1)

    @staticmethod
    def template_fit(profiles: torch.Tensor, templates: torch.Tensor) -> torch.Tensor:
        """profiles (..., 12) -> (..., k): best correlation with each template over 12 transpositions."""
        rot = centred_unit(all_rotations(templates))  # (k, 12, 12)
        corr = torch.einsum("...p,krp->...kr", centred_unit(profiles), rot)
        return corr.amax(-1)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.features(self.pitch_classes(spec))

    def features(self, pcs: torch.Tensor) -> torch.Tensor:
        """(batch, 12, frames) pitch-class distributions -> the tonal features."""
        feats = [self.interval_profile(pcs, 0)] + [self.interval_profile(pcs, lag) for lag in self.lags]
        whole = pcs.mean(-1)  # (b, 12)
        local = F.avg_pool1d(pcs, self.local_frames, self.local_frames // 2, ceil_mode=True).transpose(1, 2)  # (b, w, 12)
        key_whole = self.template_fit(whole, self.key_templates)
        key_local = self.template_fit(local, self.key_templates)  # (b, w, k)
        agreement = (centred_unit(local) * centred_unit(whole).unsqueeze(1)).sum(-1)  # (b, w)
        chords = F.avg_pool1d(pcs, self.chord_frames, self.chord_frames // 2, ceil_mode=True).transpose(1, 2)
        chord_fit = self.template_fit(chords, self.chord_templates)  # (b, beats, k)
        feats += [key_whole, key_local.mean(1), key_local.amin(1), agreement.mean(1, keepdim=True),
                  agreement.amin(1, keepdim=True), chord_fit.mean(1), chord_fit.amax(1)]
        return torch.cat(feats, dim=1)


class PitchMotionFeatures(nn.Module):
    """Whitened log spectrogram -> how the spectrum moves in pitch between frames ``lags`` apart.

    Pitch classes cannot see octaves, yet octave leaps and wide ranges are what make a line hard
    to sing. On the bands that are log-spaced (24 per octave, above ``fmin``), a shift of k bands
    is a pitch interval of k quarter tones, so the correlation of a frame with a later frame at
    each shift up to ``max_shift`` bands (a little over an octave each way) is a histogram of
    melodic and harmonic motion that keeps the interval size and direction.
    """

    def __init__(self, cfg: FrontendConfig, *, lags: tuple[int, ...] = (4, 8, 16), max_shift: int = 26,
                 fmin: float = 440.0) -> None:
        super().__init__()
        self.first_band = int(np.searchsorted(band_centres(cfg), fmin))
        self.lags = tuple(int(v) for v in lags)
        self.max_shift = int(max_shift)
        self.out_features = len(self.lags) * (2 * self.max_shift + 1)

    def forward(self, whitened: torch.Tensor) -> torch.Tensor:
        w = whitened[:, 0, self.first_band:]
        w = w / (w.sum(1, keepdim=True) + 1e-3)
        feats = [shifted_correlation(w[..., : w.shape[-1] - lag], w[..., lag:], self.max_shift) for lag in self.lags]
        return torch.cat(feats, dim=1) * w.shape[1]


class RhythmFeatures(nn.Module):
    """Normalised log spectrogram -> onset-periodicity features.

    Spectral flux in low / mid / high bands gives three onset envelopes; their normalised
    autocorrelation over lags 1..``max_lag`` frames shows how regular the pulse is (sharp, high
    peaks for a steady beat; flat for jitter and rubato). A small convolution over the lag axis
    followed by max and mean pooling makes the features tempo-tolerant.
    """

    def __init__(self, cfg: FrontendConfig, *, max_lag: int = 48, channels: int = 16) -> None:
        super().__init__()
        self.register_buffer("groups", torch.from_numpy(band_groups(cfg)))
        self.max_lag = int(max_lag)
        n = self.groups.shape[1]
        self.lag_conv = nn.Conv1d(n, channels, 5, padding=2)
        self.out_features = 2 * channels + 2 * n

    def envelopes(self, spec: torch.Tensor) -> torch.Tensor:
        flux = F.relu(spec[:, 0, :, 1:] - spec[:, 0, :, :-1])  # (b, bands, t-1)
        return torch.einsum("bft,fg->bgt", flux, self.groups)

    def autocorrelation(self, env: torch.Tensor) -> torch.Tensor:
        """(batch, groups, t) -> (batch, groups, max_lag): normalised autocorrelation at lags 1..max_lag."""
        x = env - env.mean(-1, keepdim=True)
        win = x.unfold(-1, self.max_lag + 1, 1)  # (b, g, t - L, L + 1)
        acf = (win[..., :1] * win).mean(-2)  # (b, g, L + 1)
        return acf[..., 1:] / (acf[..., :1] + 1e-6)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        env = self.envelopes(spec)
        acf = self.autocorrelation(env)
        h = F.relu(self.lag_conv(acf))
        return torch.cat([h.amax(-1), h.mean(-1), acf[..., 3:].amax(-1), env.mean(-1)], dim=1)


class PulseFeatures(nn.Module):
    """Onset envelopes (``RhythmFeatures.envelopes``) -> where the pulse is and whether it holds still.

    ``RhythmFeatures`` pools its autocorrelation over lags, so it says how regular the pulse is but
    not how fast, and one autocorrelation over the whole input cannot tell a tempo that drifts
    (rubato) from one that does not. Here the summed envelope is cut into windows of ``window``
    frames every ``hop`` frames (about 4 s every 1 s at 31 frames/s), each with its own normalised
    autocorrelation over lags 1..``max_lag``:

    - the mean over windows, lag by lag: a tempo histogram that keeps the lag position;
    - the expected log lag under a softmax over lags >= ``min_lag`` of the autocorrelation plus a
      log-lag prior (both trainable; the prior starts as librosa's tempo prior, log-normal around
      120 beats/min with one octave's spread, because a pulse's autocorrelation is as high at two
      and three beats as at one): a soft estimate of the beat period, and its spread over windows
      (tempo drift);
    - how much each window's autocorrelation agrees with the mean (cosine; mean and minimum):
      low when the pulse moves.

    All are tensor operations (ONNX-exportable), which librosa's numpy tempogram is not.
    """

    def __init__(self, *, window: int = 128, hop: int = 32, max_lag: int = 48, min_lag: int = 6,
                 sharpness: float = 20.0, prior_lag: float = 15.7) -> None:
        super().__init__()
        self.window, self.hop, self.max_lag, self.min_lag = int(window), int(hop), int(max_lag), int(min_lag)
        self.log_sharpness = nn.Parameter(torch.tensor(float(np.log(sharpness))))
        lags = torch.arange(self.min_lag, self.max_lag + 1, dtype=torch.float32)
        self.register_buffer("log_lags", torch.log(lags))
        self.lag_prior = nn.Parameter(-0.5 * torch.log2(lags / prior_lag) ** 2)  # 15.7 frames: 0.5 s
        self.out_features = self.max_lag + 4

    def local_autocorrelation(self, env: torch.Tensor) -> torch.Tensor:
        """(batch, t) -> (batch, windows, max_lag): normalised autocorrelation of each window at lags 1..max_lag.

        An input shorter than one window and its lags is padded with silence (one window)."""
        span = self.window + self.max_lag
        if env.shape[-1] < span:
            env = F.pad(env, (0, span - env.shape[-1]))
        seg = env.unfold(-1, span, self.hop)  # (b, w, span)
        seg = seg - seg[..., : self.window].mean(-1, keepdim=True)
        shifted = seg.unfold(-1, self.window, 1)  # (b, w, max_lag + 1, window): lag k starts at k
        acf = (seg[..., None, : self.window] * shifted).mean(-1)  # (b, w, max_lag + 1)
        return acf[..., 1:] / (acf[..., :1] + 1e-6)

    def forward(self, envelopes: torch.Tensor) -> torch.Tensor:
        acf = self.local_autocorrelation(envelopes.sum(1))  # (b, w, L)
        mean = acf.mean(1)  # (b, L)
        weights = torch.softmax((acf[..., self.min_lag - 1:] + self.lag_prior) * self.log_sharpness.exp(), dim=-1)
        period = (weights * self.log_lags).sum(-1)  # (b, w) expected log lag
        agreement = (centred_unit(acf) * centred_unit(mean).unsqueeze(1)).sum(-1)  # (b, w)
        return torch.cat([mean, period.mean(1, keepdim=True), period.std(1, unbiased=False, keepdim=True),
                          agreement.mean(1, keepdim=True), agreement.amin(1, keepdim=True)], dim=1)


class NoteKeyMeasures(nn.Module):
    """(b, pitches, t) note probabilities -> the corpus's four key measurements, computed exactly.

    ``PitchClassFeatures`` learns its key templates and normalises every frame, so a chord weighs
    as much as a single note, and it compares windows with the whole input's profile rather than
    with the whole input's key. ``studies/transcribed_ingredients.py`` found that the rating
    formulas themselves, applied to the transcriber's notes (probability > 0.5), follow the recorded
    key clarity, local key clarity, key consistency and minor-vs-major at r 0.85-0.89, where the
    concept predictions reach 0.66-0.80. So this module computes exactly those formulas
    (``datasets.controlled.ratings.tonal_measures``): duration-weighted pitch-class profiles of
    the notes above 0.5, their Pearson correlation with the 24 fixed Krumhansl-Kessler keys, over
    the whole input and five windows of a third of it (hop a sixth). No parameters: the threshold
    passes no gradient, so these are read-outs of the transcriber, trained by the note-roll loss.
    """

    out_features = 4

    def __init__(self, *, low_pitch: int = 24, n_pitches: int = 84, threshold: float = 0.5) -> None:
        super().__init__()
        self.threshold = float(threshold)
        self.register_buffer("fold", pitch_class_fold(n_pitches, low_pitch))
        keys = torch.cat([all_rotations(torch.tensor([KK_MAJOR]))[0], all_rotations(torch.tensor([KK_MINOR]))[0]])
        self.register_buffer("keys", centred_unit(keys))  # (24, 12): major keys C..B, then minor

    def key_correlations(self, profiles: torch.Tensor) -> torch.Tensor:
        """(..., 12) -> (..., 24); a flat or empty profile correlates 0 with every key."""
        return centred_unit(profiles) @ self.keys.T

    def window_masks(self, frames: int, device: torch.device) -> torch.Tensor:
        """(5, frames) 0/1: frame f (at time f / frames of the input) is in window k if k/6 <= f/frames < k/6 + 1/3."""
        pos = torch.arange(frames, device=device, dtype=torch.float32) / frames
        start = torch.arange(5, device=device, dtype=torch.float32)[:, None] / 6.0
        return ((pos >= start) & (pos < start + 1.0 / 3.0)).float()

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        notes = (probs > self.threshold).to(probs.dtype)
        pcs = torch.einsum("bnt,np->bpt", notes, self.fold)  # (b, 12, t) sounding notes per pitch class
        whole = self.key_correlations(pcs.sum(-1))  # (b, 24)
        local_profiles = torch.einsum("bpt,wt->bwp", pcs, self.window_masks(pcs.shape[-1], pcs.device))
        local = self.key_correlations(local_profiles)  # (b, 5, 24)
        sounding = (local_profiles.sum(-1) > 0).to(probs.dtype)  # windows with a note (the formula skips the others)
        count = sounding.sum(1)
        key = whole.argmax(-1)  # the whole input's key
        fit = local.gather(2, key[:, None, None].expand(-1, local.shape[1], 1))[..., 0]  # (b, 5)
        clarity_local = (local.amax(-1) * sounding).sum(1) / count.clamp_min(1.0)
        consistency = torch.where(sounding > 0, fit, torch.full_like(fit, 2.0)).amin(1)
        consistency = torch.where(count > 0, consistency, torch.zeros_like(consistency))
        minor_vs_major = whole[:, 12:].amax(-1) - whole[:, :12].amax(-1)
        return torch.stack([whole.amax(-1), clarity_local, consistency, minor_vs_major], dim=1)


class NoteMelodyMeasures(nn.Module):
    """(b, pitches, t) melody probabilities -> singability, range and note rate of the transcribed melody.

    ``MelodicIntervals`` compares frames a fixed lag apart, so a long note reads as many unisons
    and a fast one as a leap over several notes; melodiousness rates the intervals between
    successive *notes* (``ratings.melody_measures``). Here the melody is the highest pitch above
    0.5 in each frame; a frame belongs to a note when its neighbour on either side has the same
    pitch (runs of one frame are flicker, ``studies/transcribed_ingredients.MIN_NOTE_FRAMES``),
    a note starts where the pitch changes or after a rest, and its interval is taken to the last
    note frame before it. The singability table is ``ratings.SINGABILITY``. The "last note frame
    before t" is a maximum over a (t x t) triangular mask rather than a cumulative maximum, which
    ONNX lacks (memory grows with the square of the frames: 0.4 MB per 10 s window). No parameters:
    read-outs of the transcriber, like ``NoteKeyMeasures``.
    """

    out_features = 3

    def __init__(self, *, threshold: float = 0.5) -> None:
        super().__init__()
        self.threshold = float(threshold)
        # ``ratings.SINGABILITY`` (0-12 semitones; a test keeps them equal) and 0 beyond an octave; not
        # imported, so that a model does not load the corpus builder
        table = torch.tensor([0.6, 1.0, 1.0, 0.7, 0.7, 0.5, 0.1, 0.4, 0.15, 0.15, 0.1, 0.1, 0.2, 0.0])
        self.register_buffer("singability", table)

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        n, t = probs.shape[1:]
        active = (probs > self.threshold).any(1)  # (b, t)
        rows = torch.arange(n, device=probs.device, dtype=probs.dtype)[None, :, None]
        track = torch.where(active, ((probs > self.threshold).to(probs.dtype) * (rows + 1)).amax(1) - 1,
                            torch.full_like(active, -1, dtype=probs.dtype))  # highest row, -1 for a rest
        pad = torch.full_like(track[:, :1], -2)
        before, after = torch.cat([pad, track[:, :-1]], 1), torch.cat([track[:, 1:], pad], 1)
        in_note = active & ((track == before) | (track == after))
        start = in_note & (track != before)
        frame = torch.arange(t, device=probs.device, dtype=probs.dtype)
        earlier = frame[None, :] < frame[:, None]  # [t, s]: s before t
        last = torch.where(earlier[None] & in_note[:, None, :], frame[None, None, :], torch.full_like(frame, -1)).amax(-1)
        has_previous = start & (last >= 0)
        previous = track.gather(1, last.clamp_min(0).long())
        steps = (track - previous).abs().clamp_max(13).long()
        sing = self.singability[steps]
        count = has_previous.to(probs.dtype).sum(1)
        singability = torch.where(count > 0, (sing * has_previous).sum(1) / count.clamp_min(1.0),
                                  torch.full_like(count, 0.5))
        highest = torch.where(in_note, track, torch.full_like(track, -1)).amax(1)
        lowest = torch.where(in_note, track, torch.full_like(track, n)).amin(1)
        spread = torch.where(in_note.any(1), highest - lowest, torch.zeros_like(highest))
        singability = torch.where(start.any(1), singability, torch.zeros_like(singability))
        return torch.stack([singability, spread / 12.0, start.to(probs.dtype).sum(1) / t], dim=1)


class PitchSalience(nn.Module):
    """Whitened log spectrogram -> per-frame logits of which pitches sound, and of the melody's pitch.

    Fixed chroma (``PitchClassFeatures.pitch_classes``) folds every partial into a pitch class, so
    the 5th partial of a minor chord's root lands on its major third and the 3rd on the fifth:
    major and minor blur. A transcriber trained on note rolls (``datasets.controlled.rolls``: the
    controlled corpus knows every note it rendered) hears the notes instead. Each frame's band
    vector, with two frames of context either side, goes through a small 1-d convolution with the
    bands as channels (the bands below ~350 Hz are not evenly spaced in pitch, so a convolution
    along frequency would not be shift-equivariant there) to ``channels`` x ``n_pitches`` logits:
    channel 0 every sounding note, channel 1 the top voice's highest note. Written here because no
    audio library offers a transcriber as a trainable, ONNX-exportable layer.
    """

    def __init__(self, n_bands: int, *, n_pitches: int = 84, low_pitch: int = 24, channels: int = 2,
                 hidden: int = 128, context_dilations: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.n_pitches, self.low_pitch, self.channels = int(n_pitches), int(low_pitch), int(channels)
        self.net = nn.Sequential(
            nn.Conv1d(n_bands, hidden, 5, padding=2), nn.BatchNorm1d(hidden), nn.ReLU(),
            nn.Conv1d(hidden, hidden, 3, padding=1), nn.BatchNorm1d(hidden), nn.ReLU(),
            nn.Conv1d(hidden, channels * n_pitches, 1),
        )
        self.context = TemporalContext(hidden, context_dilations) if context_dilations else None

    def forward(self, whitened: torch.Tensor) -> torch.Tensor:
        """(b, 1, bands, t) -> (b, channels, n_pitches, t) logits."""
        hidden = self.net[:-1](whitened[:, 0])
        if self.context is not None:
            hidden = self.context(hidden)
        logits = self.net[-1](hidden)
        return logits.view(logits.shape[0], self.channels, self.n_pitches, logits.shape[-1])

    def pitch_classes(self, probs: torch.Tensor) -> torch.Tensor:
        """(b, n_pitches, t) note probabilities -> (b, 12, t) pitch-class distributions (C = 0)."""
        fold = pitch_class_fold(self.n_pitches, self.low_pitch).to(device=probs.device, dtype=probs.dtype)
        pcs = torch.einsum("bnt,np->bpt", probs, fold)
        return (pcs + 1e-3) / (pcs.sum(1, keepdim=True) + 12e-3)


class TemporalContext(nn.Module):
    """A residual stack of dilated convolutions over time: ``h + out(body(h))``.

    A frame's own spectrum (with two frames either side) cannot say whether a note is the melody's
    or whether a faint partial is a note; a second or so of context can (the melody's line, a held
    note's onset). Each layer is a kernel-3 convolution with dilation d, so the stack sees
    sum(2 d) frames either side. ``out`` starts at zero, so a trained transcriber gains the stage
    without changing what it computes until training moves it (warm starts, ``training.recipes``).
    """

    def __init__(self, channels: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for d in dilations:
            layers += [nn.Conv1d(channels, channels, 3, padding=int(d), dilation=int(d)),
                       nn.BatchNorm1d(channels), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv1d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.out(self.body(hidden))


class MelodicIntervals(nn.Module):
    """(b, pitches, t) melody probabilities -> how the melody moves between frames ``lags`` apart.

    For each lag and each interval from -``max_interval`` to +``max_interval`` semitones, the mean
    over frames of sum_p m[p, t] * m[p + k, t + lag]: a histogram of melodic steps and leaps
    (singable steps, wide leaps, repeated notes), and per-frame melody presence and pitch spread.
    """

    def __init__(self, *, lags: tuple[int, ...] = (2, 4, 8, 16), max_interval: int = 13) -> None:
        super().__init__()
        self.lags = tuple(int(v) for v in lags)
        self.max_interval = int(max_interval)
        self.out_features = len(self.lags) * (2 * self.max_interval + 1) + 2

    def forward(self, melody: torch.Tensor) -> torch.Tensor:
        n = melody.shape[1]
        feats = [shifted_correlation(melody[..., : melody.shape[-1] - lag], melody[..., lag:], self.max_interval)
                 for lag in self.lags]
        presence = melody.sum(1)  # (b, t)
        pitch = torch.arange(n, dtype=melody.dtype, device=melody.device)
        mean = (melody * pitch[:, None]).sum(1) / (presence + 1e-3)
        weight = presence / (presence.sum(-1, keepdim=True) + 1e-3)
        centre = (weight * mean).sum(-1, keepdim=True)
        spread = torch.sqrt((weight * (mean - centre) ** 2).sum(-1) + 1e-6) / 12.0  # octaves
        return torch.cat([*feats, presence.mean(-1, keepdim=True), spread[:, None]], dim=1)
