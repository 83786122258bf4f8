"""Contributions over time read against the cardiac cycle: S1 / systole / S2 / diastole beside each concept's
contribution timeline (an InterpretML-style view: ``data()`` a DataFrame, ``plot()`` a figure).

The contributions are ``explain.timeline``'s: the model read on short windows (default: the model's
``timeline_window_seconds``, 0.3 s for the heart models, a fraction of a cycle) every ``hop_seconds``; each
window's logits are exactly the intercept plus its concept terms. The states come from a learned
segmenter (``pcg_features.CardiacCycleSegmenter``, trained on the corpus's per-beat tables by
``training.heart``): by default the one inside the model's backbone (``compact_pcg_beats`` reads the heart
rate from its S1 onsets, so a zoo entry ships it with its weights), or one given; and, where a recording has
a per-beat table (the controlled corpus's segments/<record>.csv), from the table too, so the two can be
compared.

``peaks_in_systole`` asks the question of issue 34: in each beat, does the window where the systolic murmur
adds most to the "abnormal" logit lie in systole?
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .._extras import require
from ..config import FrontendConfig
from ..model import TwoStageModel
from ..pcg_features import CardiacCycleSegmenter
from .timeline import Timeline, timeline

STATES = ("S1", "systole", "S2", "diastole")
STATE_COLOURS = ("#d62728", "#ff9896", "#1f77b4", "#aec7e8")
_BOUNDARIES = ("s1_start", "s1_end", "s2_start", "s2_end", "diastole_end")


def model_segmenter(model: Any) -> CardiacCycleSegmenter | None:
    """The segmenter inside a model's backbone (``pcg_features.BeatIntervals``), or None when it has none."""
    beats = getattr(getattr(model, "backbone", None), "beats", None)
    return None if beats is None else beats.segmenter


def load_segmenter(source: str | Path) -> CardiacCycleSegmenter:
    """A segmenter saved by ``training.heart.train_segmenter`` (a folder with segmenter.json +
    model.safetensors), or the one inside a model: a zoo name (``midlevel.zoo.load``, its weights
    sha256-checked) or a model folder whose backbone carries one."""
    from safetensors.torch import load_file

    directory = Path(source)
    if not (directory / "segmenter.json").is_file():
        from .. import zoo

        model = zoo.load(source)
        net = model_segmenter(model)
        if net is None:
            raise ValueError(f"{source}: neither a segmenter folder (segmenter.json) nor a model with a segmenter "
                             f"in its backbone (backbone {model.config.backbone!r})")
        return net.eval()
    info = json.loads((directory / "segmenter.json").read_text())
    net = CardiacCycleSegmenter(FrontendConfig(**info["frontend"]), channels=info["settings"]["channels"],
                                dilations=tuple(info["settings"]["dilations"]))
    net.load_state_dict(load_file(str(directory / "model.safetensors")))
    return net.eval()


def states_at(segments: pd.DataFrame, times: np.ndarray) -> np.ndarray:
    """(len(times),) the state index (``STATES``) a per-beat table gives each time, -1 where it says nothing."""
    out = np.full(len(times), -1, dtype=np.int64)
    for s1, s1e, s2, s2e, end in segments[list(_BOUNDARIES)].to_numpy(float):
        for k, (a, b) in enumerate(((s1, s1e), (s1e, s2), (s2, s2e), (s2e, end))):
            out[(times >= a) & (times < b)] = k
    return out


@dataclass
class CardiacCycleView:
    """One recording: its timeline, the states per segmenter frame, and (where known) the table's states."""

    timeline: Timeline
    target: str
    frame_times: np.ndarray | None = None  # (F,) seconds of the segmenter's frames
    states: np.ndarray | None = None  # (F,) predicted state index per frame
    segments: pd.DataFrame | None = None  # the per-beat table, when the recording has one

    def _column(self, times: np.ndarray, which: str) -> np.ndarray:
        if which == "predicted":
            idx = np.clip(np.searchsorted(self.frame_times, times), 0, len(self.frame_times) - 1)
            return self.states[idx]
        return states_at(self.segments, times)

    def data(self) -> pd.DataFrame:
        """One row per timeline window: start, end, centre, the state at the centre (predicted and from the
        table, where there are), the intercept, each concept's contribution to ``target`` and the logit."""
        t = self.timeline
        k = t.target_names.index(self.target)
        frame = pd.DataFrame({"start_s": t.starts, "end_s": t.ends, "centre_s": t.centres})
        for which, present in (("predicted", self.states is not None), ("table", self.segments is not None)):
            if present:
                idx = self._column(t.centres, which)
                frame[f"state_{which}"] = [STATES[i] if i >= 0 else None for i in idx]
        frame["intercept"] = t.intercept[k]
        for j, name in enumerate(t.concept_names):
            frame[name] = t.contributions[:, k, j]
        frame[self.target] = t.outputs[:, k]
        return frame

    def plot(self, path: str | Path | None = None, *, concepts: Sequence[str] | None = None, seconds: tuple[float, float] | None = None):
        """States over time (predicted above, table below where known) over the contributions of ``concepts``
        (default: the three that vary most over the windows) to ``target``; ``seconds``: a time span to show."""
        require("matplotlib", "report", "CardiacCycleView.plot")
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch

        data = self.data()
        t = self.timeline
        if concepts is None:
            spread = data[list(t.concept_names)].std().sort_values(ascending=False)
            concepts = list(spread.index[:3])
        rows = [("predicted", self.states is not None), ("table", self.segments is not None)]
        rows = [r for r, present in rows if present]
        fig, axes = plt.subplots(len(rows) + 1, 1, figsize=(11, 1.2 + 0.5 * len(rows) + 2.6), sharex=True,
                                 gridspec_kw={"height_ratios": [0.35] * len(rows) + [2.0]}, squeeze=False)
        axes = axes[:, 0]
        grid = np.arange(0.0, t.duration, 0.005)
        for ax, which in zip(axes, rows):
            idx = self._column(grid, which)
            for s, colour in enumerate(STATE_COLOURS):
                ax.fill_between(grid, 0, 1, where=idx == s, color=colour, step="mid", linewidth=0)
            ax.set_yticks([])
            ax.set_ylabel("segmenter" if which == "predicted" else "table", rotation=0, ha="right", va="center")
        ax = axes[-1]
        for name in concepts:
            ax.plot(data["centre_s"], data[name], label=name)
        ax.axhline(0, color="0.6", linewidth=0.8)
        ax.set_ylabel(f"contribution to\nthe {self.target} logit")
        ax.set_xlabel("seconds")
        handles = [Patch(color=c, label=s) for s, c in zip(STATES, STATE_COLOURS)]
        ax.legend(handles=ax.get_legend_handles_labels()[0] + handles, fontsize=8, ncol=2, loc="upper right")
        if seconds is not None:
            ax.set_xlim(*seconds)
        fig.suptitle(f"{Path(t.source).name}: {t.window_seconds:g} s windows every {t.hop_seconds * 1000:.0f} ms")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig


def cardiac_cycle(model: TwoStageModel, audio: Any, *, segmenter: CardiacCycleSegmenter | None = None,
                  segments: pd.DataFrame | None = None, target: str | None = None,
                  window_seconds: float | None = None, hop_seconds: float = 0.02,
                  sample_rate: int | None = None) -> CardiacCycleView:
    """The view of one recording. ``segmenter``: default the model's own (``model_segmenter``; none for a model
    without one: then no predicted states); ``target``: the class whose logit is split (default: the last
    class, "abnormal" for the heart models); ``window_seconds``: default the model's ``timeline_window_seconds``."""
    if not isinstance(model, TwoStageModel):
        raise TypeError(f"{model.name} is a black box: it has no concept contributions to show over the cycle")
    window = window_seconds or float(model.config.metadata.get("timeline_window_seconds", 0.3))
    clip = model.read_audio(audio, sample_rate=sample_rate)
    line = timeline(model, clip, window_seconds=window, hop_seconds=hop_seconds)
    frame_times = states = None
    segmenter = segmenter if segmenter is not None else model_segmenter(model)
    if segmenter is not None:
        if segmenter.frontend.cfg.sample_rate != model.config.sample_rate:
            raise ValueError(f"the segmenter reads {segmenter.frontend.cfg.sample_rate} Hz audio, the model "
                             f"{model.config.sample_rate} Hz")
        states = segmenter.states(clip.samples)
        frame_times = np.arange(len(states)) * segmenter.frontend.cfg.hop_length / segmenter.frontend.cfg.sample_rate
    return CardiacCycleView(line, target or line.target_names[-1], frame_times, states, segments)


def peaks_in_systole(view: CardiacCycleView, concept: str = "systolic_murmur", *, of: str = "contribution") -> pd.DataFrame:
    """Per beat of the recording's table whose whole cycle the timeline's window centres cover: the window
    (by centre) inside the cycle where ``concept`` adds most to the view's target (``of="concept"``: where the
    concept itself is highest), its state by the table and by the segmenter (where there is one), and
    ``in_systole`` (by the table). A beat over which the term does not move at all (a head's curve flat
    where the windows' values lie) has no peak: its state is "none". ``systolic_share``: the share of the
    cycle that is systole (the chance that a peak placed at random lies there)."""
    if view.segments is None:
        raise ValueError("peaks_in_systole needs the recording's per-beat table (segments)")
    if of not in ("contribution", "concept"):
        raise ValueError(f"of must be 'contribution' or 'concept'; got {of!r}")
    data = view.data()
    centres = data["centre_s"].to_numpy()
    values = data[concept].to_numpy() if of == "contribution" else view.timeline.series(concept)
    rows = []
    for beat, s1, s1e, s2, s2e, end in view.segments[["beat", *_BOUNDARIES]].to_numpy(float):
        inside = (centres >= s1) & (centres < end)
        if end > centres.max() or s1 < centres.min() or not inside.any():
            continue
        i = np.flatnonzero(inside)[np.argmax(values[inside])]
        peak = centres[i]
        state = int(np.searchsorted([s1e, s2, s2e], peak, side="right"))
        spread = float(values[inside].max() - values[inside].min())
        row = {"beat": int(beat), "peak_s": float(peak), of: float(values[i]), f"{of}_range": spread,
               "state": STATES[state] if spread > 0 else "none", "in_systole": state == 1 and spread > 0,
               "systolic_share": (s2 - s1e) / (end - s1)}
        if view.states is not None:
            row["state_predicted"] = data["state_predicted"].iloc[i] if spread > 0 else "none"
        rows.append(row)
    return pd.DataFrame(rows)
