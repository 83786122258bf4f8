"""Measurements that move with a transposition or a time stretch by a known amount (issue 30).

Every descriptor in ``music_features`` is transposition-invariant by design, and the CNN ends in
global average pooling, which also forgets where in frequency a pattern sat. So a network built
from them can only guess *register* from timbre, and its *tempo* from pooled autocorrelations that
say how regular a pulse is, not how fast. On recorded music that showed: a +3 semitone pitch shift
raised the default's register on 48% of excerpts (chance), and its tempo followed a time stretch
with a rank correlation of 0.39.

These eight numbers are equivariant by construction, so a model can be *exactly* right about what a
transposition or a stretch does, and only has to learn the offset (what a given height means):

- ``note_height``, ``melody_height``: the mean pitch (in octaves) of the transcriber's note and
  top-voice probabilities, weighted by probability. A transposition by ``k`` semitones adds
  ``k / 12`` where the transcriber follows the notes.
- ``spectral_height``, ``power_height``: the mean log2 frequency of the spectrogram weighted by band
  magnitude, and by power. A pitch shift by ``k`` semitones moves every partial by ``k / 12`` octave;
  the means move by less where content leaves the bands at the top (Nyquist) or enters at the bottom.
  Weighting by the *log* magnitude (or by the whitened spectrum) does not work: the smooth,
  roughly power-law envelope of a mix looks the same when shifted along log frequency, and the mean
  stays near the middle of the bands. On 13 recorded excerpts (asc-music, planetblupi) a +3 semitone
  ``librosa.effects.pitch_shift`` raised the magnitude-weighted mean on all 13 (by 1.3 semitones on
  average, sd 0.4) and the power-weighted one on all 13 (2.0, sd 0.7); the log-weighted one on 38%.
- ``log_onset_rate``: the log of the mean spectral flux per frame. Played ``s`` times faster, the
  same onsets arrive ``s`` times as often with the same rise in log level, so it moves by ``ln s``;
  a gain change adds a constant to the log spectrogram and leaves the flux unchanged.
- ``log_peak_rate``, ``log_band_peak_rate``: the log of the share of frames that are onsets,
  picked as librosa's ``onset_detect`` picks them (a local maximum of the min-max normalised onset
  envelope within +-2 frames, above its +-4-frame mean by 0.05), on the summed envelope and averaged
  over the low, mid and high band envelopes (+-1 and +-3 frames, 0.07). Counting peaks survives what
  a phase vocoder does to transients; the mean flux does not: it smears every onset, so a stretch by
  any factor other than 1 lowers the flux. On the 13 excerpts above, the rank correlation with the
  stretch factor (0.7, 0.85, 1, 1.2, 1.4) was 0.86 and 0.84 for these, 0.55 for the log mean flux,
  0.32 for the pulse rate below, and 0.19 for ``librosa.feature.tempo``'s own estimate (octave jumps).
- ``log_pulse_rate``: minus the expected log lag of the onset envelope's autocorrelation under a
  softmax with librosa's log-normal tempo prior (as in ``PulseFeatures``, but fixed, so it cannot
  learn to break the equivariance): about ``ln s`` for a stretch by ``s``, away from octave jumps.

Parameter-free tensor operations, so they export to ONNX with the network. Written here because no
library offers them as layers (librosa's ``spectral_centroid`` and ``tempo`` are numpy functions).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .config import FrontendConfig
from .music_features import band_centres

NAMES = ("note_height", "melody_height", "spectral_height", "power_height", "log_onset_rate", "log_peak_rate",
         "log_band_peak_rate", "log_pulse_rate")


class EquivariantMeasures(nn.Module):
    """(log spectrogram, note probabilities, onset envelopes) -> (batch, 8) ``NAMES``."""

    out_features = len(NAMES)

    def __init__(self, frontend: FrontendConfig, *, low_pitch: int = 24, n_pitches: int = 84,
                 max_lag: int = 48, min_lag: int = 6, sharpness: float = 20.0, prior_lag: float = 15.7) -> None:
        super().__init__()
        self.register_buffer("band_octaves", torch.as_tensor(np.log2(np.maximum(band_centres(frontend), 1.0)),
                                                             dtype=torch.float32))
        self.register_buffer("pitch_octaves", torch.arange(low_pitch, low_pitch + n_pitches, dtype=torch.float32) / 12.0)
        self.max_lag, self.min_lag, self.sharpness = int(max_lag), int(min_lag), float(sharpness)
        lags = torch.arange(self.min_lag, self.max_lag + 1, dtype=torch.float32)
        self.register_buffer("log_lags", torch.log(lags))
        self.register_buffer("lag_prior", -0.5 * torch.log2(lags / prior_lag) ** 2)  # 15.7 frames: 120 beats/min

    @staticmethod
    def weighted_mean(weights: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """(b, n, t) non-negative weights, (n,) positions -> (b,) mean position (0 where all weights are 0)."""
        w = weights.sum(-1)
        return (w * positions).sum(-1) / (w.sum(-1) + 1e-6)

    @staticmethod
    def magnitude(logspec: torch.Tensor) -> torch.Tensor:
        """(b, 1, bands, t) log10(1 + magnitude) -> (b, bands, t) magnitude (clamped against overflow)."""
        return (torch.pow(10.0, logspec[:, 0].clamp(max=12.0)) - 1.0).clamp_min(0.0)

    def pulse_rate(self, envelope: torch.Tensor) -> torch.Tensor:
        """(b, t) onset envelope -> (b,) minus the expected log lag (frames) of its autocorrelation."""
        span = self.max_lag + 1
        if envelope.shape[-1] < 2 * span:
            envelope = nn.functional.pad(envelope, (0, 2 * span - envelope.shape[-1]))
        x = envelope - envelope.mean(-1, keepdim=True)
        win = x.unfold(-1, span, 1)  # (b, t - L, L + 1)
        acf = (win[..., :1] * win).mean(-2)
        acf = acf[..., 1:] / (acf[..., :1] + 1e-6)  # lags 1..max_lag
        weights = torch.softmax((acf[..., self.min_lag - 1:] + self.lag_prior) * self.sharpness, dim=-1)
        return -(weights * self.log_lags).sum(-1)

    @staticmethod
    def log_peak_rate(envelope: torch.Tensor, half_max: int, half_mean: int, delta: float) -> torch.Tensor:
        """(b, t) onset envelope -> (b,) log share of frames that are picked as onsets (``NAMES``)."""
        lo, hi = envelope.amin(-1, keepdim=True), envelope.amax(-1, keepdim=True)
        e = ((envelope - lo) / (hi - lo + 1e-6))[:, None]
        local_max = nn.functional.max_pool1d(e, 2 * half_max + 1, 1, half_max)
        local_mean = nn.functional.avg_pool1d(e, 2 * half_mean + 1, 1, half_mean, count_include_pad=False)
        peaks = (e >= local_max) & (e >= local_mean + delta)
        return torch.log(peaks.to(e.dtype).mean(-1)[:, 0] + 1e-3)

    def forward(self, logspec: torch.Tensor, probs: torch.Tensor, envelopes: torch.Tensor) -> torch.Tensor:
        """``logspec`` (b, 1, bands, t) un-normalised log10(1 + magnitude), ``probs`` (b, 2, pitches, t),
        ``envelopes`` (b, groups, t - 1)."""
        note = self.weighted_mean(probs[:, 0], self.pitch_octaves)
        melody = self.weighted_mean(probs[:, 1], self.pitch_octaves)
        magnitude = self.magnitude(logspec)
        spectral = self.weighted_mean(magnitude, self.band_octaves)
        power = self.weighted_mean(magnitude ** 2, self.band_octaves)
        flux = envelopes.sum(1)  # (b, t - 1)
        onset_rate = torch.log(flux.mean(-1) + 1e-4)
        peak_rate = self.log_peak_rate(flux, 2, 4, 0.05)
        b, g, t = envelopes.shape
        band_peak_rate = self.log_peak_rate(envelopes.reshape(b * g, t), 1, 3, 0.07).view(b, g).mean(1)
        return torch.stack([note, melody, spectral, power, onset_rate, peak_rate, band_peak_rate,
                            self.pulse_rate(flux)], dim=1)


class RegisterHeight(nn.Module):
    """(log spectrogram, note probabilities) -> (batch,) a pitch height in octaves that a transposition raises.

    ``melody + spectral_share * spectral``: the top voice's mean pitch weighted by its probability *squared*
    (so the transcriber's confident notes count, not its diffuse floor, which a shift does not move), plus
    a share of the magnitude-weighted mean log frequency (``spectral_height``), which follows a pitch
    shift on recorded music whatever the transcriber hears. On the controlled corpus the melody term
    predicts the register rating almost as well as the whole network (r 0.83 vs 0.84, 5-fold CV); on
    recorded music it rises after a +3 semitone shift on about 3 excerpts in 4, the spectral term on 19 in
    20 (``studies/structural_readouts.py``). ``spectral_share`` (a saved buffer) is set when the read-out is
    fitted (``training.structural``). A concept layer row that reads only this column with a non-negative
    weight makes register rise wherever the height does.
    """

    def __init__(self, measures: EquivariantMeasures, spectral_share: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("band_octaves", measures.band_octaves.clone(), persistent=False)
        self.register_buffer("pitch_octaves", measures.pitch_octaves.clone(), persistent=False)
        self.register_buffer("spectral_share", torch.tensor(float(spectral_share)))

    def forward(self, logspec: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        melody = EquivariantMeasures.weighted_mean(probs[:, 1] ** 2, self.pitch_octaves)
        spectral = EquivariantMeasures.weighted_mean(EquivariantMeasures.magnitude(logspec), self.band_octaves)
        return melody + self.spectral_share * spectral
