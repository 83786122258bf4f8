"""Spectrogram -> embedding networks. All end in global pooling, so any length works."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .config import FrontendConfig
from .equivariant_measures import EquivariantMeasures, RegisterHeight
from .music_features import (MelodicIntervals, NoteKeyMeasures, NoteMelodyMeasures, PitchClassFeatures,
                             PitchMotionFeatures, PitchSalience, PulseFeatures, RhythmFeatures)
from .pcg_features import PCGBackbone


def conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class VGGBackbone(nn.Sequential):
    """The 2019 paper's VGG-style CNN (as re-implemented in CPJKU/robustness_mer_bottleneck).

    conv5x5/2 64, conv3x3 64, maxpool+dropout, conv3x3 128 x2, maxpool+dropout,
    conv3x3 256, 256, 384, 512, a 1x1 conv to 256, BN, ReLU, global average pool -> 256.
    """

    def __init__(self, *, dropout: float = 0.3) -> None:
        super().__init__(
            conv_bn_relu(1, 64, 5, stride=2),
            conv_bn_relu(64, 64, 3),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
            conv_bn_relu(64, 128, 3),
            conv_bn_relu(128, 128, 3),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
            conv_bn_relu(128, 256, 3),
            conv_bn_relu(256, 256, 3),
            conv_bn_relu(256, 384, 3),
            conv_bn_relu(384, 512, 3),
            conv_bn_relu(512, 256, 1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.out_features = 256


class CompactBackbone(nn.Sequential):
    """A small CNN of the same shape (about 1/25 of the VGG's compute) that trains on a 2-core CPU."""

    def __init__(self, *, width: int = 16, dropout: float = 0.1) -> None:
        w = width
        super().__init__(
            conv_bn_relu(1, w, 5, stride=2),
            conv_bn_relu(w, 2 * w, 3),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
            conv_bn_relu(2 * w, 4 * w, 3),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
            conv_bn_relu(4 * w, 8 * w, 3),
            conv_bn_relu(8 * w, 8 * w, 1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.out_features = 8 * w


class RawWaveformBackbone(nn.Sequential):
    """A 1-D CNN on the waveform itself, after Becker et al.'s AudioNet (2018), at a 2-core CPU's size.

    Input: ``WaveformInput``'s (batch, 1, 1, samples). A strided 9-tap convolution (a learnt filterbank at
    a quarter of the sample rate), then five 3-tap conv/BN/ReLU blocks with max pooling (as AudioNet's
    stack), global average pooling -> 8 * width. Standard layers only, so captum's LRP rules apply.
    """

    def __init__(self, *, width: int = 16, dropout: float = 0.1) -> None:
        w = width

        def block(c_in: int, c_out: int, pool: int) -> list[nn.Module]:
            return [nn.Conv1d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm1d(c_out), nn.ReLU(inplace=True),
                    nn.MaxPool1d(pool)]

        super().__init__(
            nn.Flatten(1, 2),  # (b, 1, 1, t) -> (b, 1, t)
            nn.Conv1d(1, 2 * w, 9, stride=4, padding=4, bias=False), nn.BatchNorm1d(2 * w), nn.ReLU(inplace=True),
            nn.MaxPool1d(4),
            *block(2 * w, 2 * w, 2), *block(2 * w, 4 * w, 2), nn.Dropout(dropout),
            *block(4 * w, 4 * w, 2), *block(4 * w, 8 * w, 2), nn.Dropout(dropout),
            nn.Conv1d(8 * w, 8 * w, 3, padding=1, bias=False), nn.BatchNorm1d(8 * w), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool1d(1),
            nn.Flatten(),
        )
        self.out_features = 8 * w


class CompactMusicBackbone(nn.Module):
    """The compact CNN beside pitch-class, pitch-motion and rhythm descriptors (``midlevel.music_features``).

    The CNN's embedding and the descriptors are concatenated, batch-normalised and mixed by one
    hidden layer. The descriptors see a spectrally whitened copy of the input (the un-normalised
    log spectrogram minus its local mean over neighbouring bands), which keeps spectral peaks,
    i.e. the partials of notes; ``band_mean``/``band_std`` undo the front-end's normalisation and
    are set with it (``AudioModel.set_input_normalization``).
    """

    def __init__(self, frontend: FrontendConfig, *, width: int = 16, hidden: int = 128,
                 dropout: float = 0.1, whiten_bands: int = 9) -> None:
        super().__init__()
        self.cnn = CompactBackbone(width=width, dropout=dropout)
        self.pitch = PitchClassFeatures(frontend)
        self.motion = PitchMotionFeatures(frontend)
        self.rhythm = RhythmFeatures(frontend)
        n_bands = self.pitch.chroma.shape[0]
        self.register_buffer("band_mean", torch.zeros(n_bands))
        self.register_buffer("band_std", torch.ones(n_bands))
        self.whiten_bands = int(whiten_bands)
        n_in = sum(m.out_features for m in (self.cnn, self.pitch, self.motion, self.rhythm))
        self.mix = nn.Sequential(nn.BatchNorm1d(n_in), nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.out_features = hidden

    @torch.no_grad()
    def set_input_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.band_mean.copy_(torch.as_tensor(mean, dtype=self.band_mean.dtype).expand_as(self.band_mean))
        self.band_std.copy_(torch.as_tensor(std, dtype=self.band_std.dtype).clamp_min(1e-6).expand_as(self.band_std))

    def log_spectrogram(self, spec: torch.Tensor) -> torch.Tensor:
        """(b, 1, bands, t) normalised -> the front-end's log spectrogram, normalisation undone."""
        return spec * self.band_std[:, None] + self.band_mean[:, None]

    def whiten(self, spec: torch.Tensor) -> torch.Tensor:
        """(b, 1, bands, t) normalised -> (b, 1, bands, t) log spectrogram above its local band mean."""
        logspec = self.log_spectrogram(spec)
        k = self.whiten_bands
        local = F.avg_pool2d(logspec, (k, 1), stride=1, padding=(k // 2, 0), count_include_pad=False)
        return F.relu(logspec - local)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        whitened = self.whiten(spec)
        parts = [self.cnn(spec), self.pitch(whitened), self.motion(whitened), self.rhythm(spec)]
        return self.mix(torch.cat(parts, dim=1))


class CompactTranscribeBackbone(CompactMusicBackbone):
    """``CompactMusicBackbone`` plus a note transcriber whose notes feed tonal and melodic descriptors.

    The transcriber (``PitchSalience``) reads the whitened spectrogram; its note probabilities,
    folded into pitch classes, feed a second ``PitchClassFeatures`` (key, mode, chords from notes
    rather than partials), and its melody probabilities feed ``MelodicIntervals`` (steps and leaps
    of the top voice). Trained with an auxiliary loss on note rolls where a corpus has them
    (``TrainSettings.roll_weight``); without rolls it is still a valid, if unguided, network.

    With ``pulse``, ``PulseFeatures`` (tempo histogram, beat period and its drift) enter the mixing
    layer's pre-activation through their own batch norm and a linear map that starts at zero, so a
    trained model gains them without changing what it computes until training moves the map.
    With ``note_measures``, ``NoteKeyMeasures`` and ``NoteMelodyMeasures`` (the corpus's key and
    melody formulas on the transcribed notes) enter the same way. With ``equivariant``,
    ``EquivariantMeasures`` (pitch heights and onset rates that move by a known amount under a
    transposition or a time stretch) enter the same way too.
    """

    def __init__(self, frontend: FrontendConfig, *, width: int = 16, hidden: int = 128,
                 dropout: float = 0.1, whiten_bands: int = 9, context_dilations: tuple[int, ...] = (),
                 pulse: bool = False, note_measures: bool = False, equivariant: bool = False,
                 register_height: bool = False) -> None:
        super().__init__(frontend, width=width, hidden=hidden, dropout=dropout, whiten_bands=whiten_bands)
        n_bands = self.pitch.chroma.shape[0]
        self.salience = PitchSalience(n_bands, context_dilations=context_dilations)
        self.note_pitch = PitchClassFeatures(frontend)
        self.melody = MelodicIntervals()
        n_in = self.mix[0].num_features + self.note_pitch.out_features + self.melody.out_features
        self.mix = nn.Sequential(nn.BatchNorm1d(n_in), nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.pulse = PulseFeatures() if pulse else None
        if self.pulse is not None:
            self.pulse_in = nn.Sequential(nn.BatchNorm1d(self.pulse.out_features), nn.Linear(self.pulse.out_features, hidden))
            nn.init.zeros_(self.pulse_in[1].weight)
            nn.init.zeros_(self.pulse_in[1].bias)
        self.note_measures = note_measures
        if note_measures:
            self.note_keys, self.note_melody = NoteKeyMeasures(low_pitch=self.salience.low_pitch,
                                                               n_pitches=self.salience.n_pitches), NoteMelodyMeasures()
            n_measures = NoteKeyMeasures.out_features + NoteMelodyMeasures.out_features
            self.note_measures_in = nn.Sequential(nn.BatchNorm1d(n_measures), nn.Linear(n_measures, hidden))
            nn.init.zeros_(self.note_measures_in[1].weight)
            nn.init.zeros_(self.note_measures_in[1].bias)
        self.equivariant = EquivariantMeasures(frontend, low_pitch=self.salience.low_pitch,
                                               n_pitches=self.salience.n_pitches) if equivariant else None
        if self.equivariant is not None:
            n_eq = EquivariantMeasures.out_features
            self.equivariant_in = nn.Sequential(nn.BatchNorm1d(n_eq), nn.Linear(n_eq, hidden))
            nn.init.zeros_(self.equivariant_in[1].weight)
            nn.init.zeros_(self.equivariant_in[1].bias)
        #: with ``register_height``, one more output column after the hidden units: ``RegisterHeight``, a pitch
        #: height that rises with a transposition by construction, for a concept layer row that reads only it
        self.register_height = RegisterHeight(self.equivariant) if register_height and equivariant else None
        self.out_features = hidden + (1 if self.register_height is not None else 0)

    def forward_with_salience(self, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(embedding (b, hidden), plus the ``RegisterHeight`` column where there is one; note-roll logits
        (b, 2, pitches, t))."""
        whitened = self.whiten(spec)
        logits = self.salience(whitened)
        probs = torch.sigmoid(logits)
        notes = self.note_pitch.features(self.salience.pitch_classes(probs[:, 0]))
        parts = [self.cnn(spec), self.pitch(whitened), self.motion(whitened), self.rhythm(spec),
                 notes, self.melody(probs[:, 1])]
        pre = self.mix[1](self.mix[0](torch.cat(parts, dim=1)))  # batch norm, linear
        if self.pulse is not None:
            pre = pre + self.pulse_in(self.pulse(self.rhythm.envelopes(spec)))
        if self.note_measures:
            measures = torch.cat([self.note_keys(probs[:, 0]), self.note_melody(probs[:, 1])], dim=1)
            pre = pre + self.note_measures_in(measures)
        if self.equivariant is not None:
            logspec = self.log_spectrogram(spec)
            pre = pre + self.equivariant_in(self.equivariant(logspec, probs, self.rhythm.envelopes(spec)))
        embedding = self.mix[3](self.mix[2](pre))  # ReLU, dropout
        if self.register_height is not None:
            embedding = torch.cat([embedding, self.register_height(logspec, probs)[:, None]], dim=1)
        return embedding, logits

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.forward_with_salience(spec)[0]


#: name -> builder from the front-end's settings (backbones that read pitch need its band layout)
BACKBONES = {
    "vgg": lambda frontend: VGGBackbone(),
    "compact": lambda frontend: CompactBackbone(),
    "compact_music": CompactMusicBackbone,
    # the waveform itself (needs ``FrontendConfig(representation="waveform", hop_length=1)``)
    "raw_waveform": lambda frontend: RawWaveformBackbone(),
    "compact_transcribe": CompactTranscribeBackbone,
    # the transcriber with ~1 s of context either side (``TemporalContext``: 1+2+4+8+16 = 31 frames)
    "compact_transcribe_context": lambda frontend: CompactTranscribeBackbone(
        frontend, context_dilations=(1, 2, 4, 8, 16)),
    # the transcriber plus where the pulse is and whether it drifts (``PulseFeatures``)
    "compact_transcribe_pulse": lambda frontend: CompactTranscribeBackbone(frontend, pulse=True),
    # the transcriber plus the corpus's key and melody formulas on its notes (``NoteKeyMeasures``, ``NoteMelodyMeasures``)
    "compact_transcribe_measures": lambda frontend: CompactTranscribeBackbone(frontend, note_measures=True),
    # the above plus pitch heights and onset rates that move with a transposition or a time stretch
    "compact_transcribe_equivariant": lambda frontend: CompactTranscribeBackbone(
        frontend, note_measures=True, equivariant=True),
    # the above plus a transposition-equivariant register height as its own output column (``RegisterHeight``)
    "compact_transcribe_register": lambda frontend: CompactTranscribeBackbone(
        frontend, note_measures=True, equivariant=True, register_height=True),
    # heart sounds: the compact CNN beside the beat period's envelope autocorrelation (``pcg_features``)
    "compact_pcg": lambda frontend: PCGBackbone(CompactBackbone(), frontend),
    # ... and the heart rate from a learned segmenter's S1 onsets (``pcg_features.BeatIntervals``)
    "compact_pcg_beats": lambda frontend: PCGBackbone(CompactBackbone(), frontend, beats=True),
}

#: backbones that read ``WaveformInput`` rather than a log spectrogram
WAVEFORM_BACKBONES = frozenset({"raw_waveform"})

#: backbone -> the backbone it only adds modules to: a model of the latter can warm-start the
#: former (``training.recipes.warm_start``); the added modules keep their own start
EXTENDS = {"compact_transcribe_context": "compact_transcribe", "compact_transcribe_pulse": "compact_transcribe",
           "compact_transcribe_measures": "compact_transcribe",
           "compact_transcribe_equivariant": "compact_transcribe_measures"}
# (``compact_transcribe_register`` is not here: its output has one more column, so the concept layer grows;
# ``training.structural.with_register_height`` starts it from a ``compact_transcribe_equivariant`` model)

#: backbone -> the backbone whose trained layers it has, and no others (for comparing like with like, e.g. a
#: black box's backbone against an explainable model's): ``compact_transcribe_register`` only appends a
#: parameter-free pitch height to ``compact_transcribe_equivariant``'s output
SAME_TRAINED_NETWORK = {"compact_transcribe_register": "compact_transcribe_equivariant"}


def trained_network(backbone: str) -> str:
    """The backbone whose trained layers ``backbone`` has (itself, unless ``SAME_TRAINED_NETWORK`` says otherwise)."""
    return SAME_TRAINED_NETWORK.get(backbone, backbone)


def build_backbone(name: str, frontend: FrontendConfig | None = None) -> nn.Module:
    try:
        builder = BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose from {sorted(BACKBONES)}") from None
    frontend = frontend or FrontendConfig()
    wants = "waveform" if name in WAVEFORM_BACKBONES else "log_spectrogram"
    if frontend.representation != wants:
        raise ValueError(f"backbone {name!r} reads a {wants.replace('_', ' ')}, but the front-end gives a "
                         f"{frontend.representation.replace('_', ' ')} (frontend.representation)")
    return builder(frontend)
