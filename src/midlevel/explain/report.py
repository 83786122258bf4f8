"""The HTML report of one track, in two formats; both are one self-contained file (nothing fetched).

* ``html`` (the default): the interactive page of ``interactive`` -- the track in a player whose
  position drives a cursor over the timeline, the contributions over time and the attribution map
  of the whole track; targets and concepts switched in the page; each one's listenable part.
* ``png`` (for papers): static figures (PNG data URIs) and WAV players, no scripts. Views:

  * over time: the whole track (timeline plot and per-window table);
  * over the spectrogram and to listen to: an excerpt of at most ``max_seconds`` around the
    window where the target is highest (the whole track when it is short), so the file size
    and the cost of attribution do not grow with the track.
"""

from __future__ import annotations

import base64
import gc
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import soundfile as sf

from .._extras import require_all
from ..audio import Audio
from ..config import ConfigError
from ..ioutil import atomic_write_text
from ..model import AudioModel, TwoStageModel
from .attribution import AttributionMaps, target_maps
from .listen import listenable_parts
from .posthoc import POSTHOC, posthoc_maps
from .report_parts import card_section, choose_target, safe_stem, table
from .timeline import Timeline, timeline

CSS = """body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222;line-height:1.4}
table{border-collapse:collapse;font-size:12px;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;
text-align:right}th{background:#f3f3f3}img{max-width:100%}.note{color:#665;font-size:13px}
.pair{display:flex;gap:2em;flex-wrap:wrap}figure{margin:0.5em 0}figcaption{font-size:13px}
details{margin:0.5em 0}"""


@dataclass(frozen=True)
class Excerpt:
    """The span the spectrogram and listening views cover."""

    audio: Audio
    start: float  # seconds into the track
    whole_track: bool


def png_data_uri(fig) -> str:
    """The figure as a PNG data URI; the figure is closed and collected (its reference cycles
    would otherwise keep every mesh alive until the next full collection)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    fig.clear()
    del fig
    gc.collect()
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def wav_data_uri(samples: np.ndarray, sample_rate: int) -> str:
    """16-bit PCM WAV (half the size of float; every browser plays it), clipped to [-1, 1]."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(samples, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    return "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def img(fig, alt: str) -> str:
    return f'<figure><img src="{png_data_uri(fig)}" alt="{html.escape(alt)}"></figure>'


def player(samples: np.ndarray, sample_rate: int, label: str) -> str:
    return (f'<figure><figcaption>{html.escape(label)}</figcaption><audio controls preload="metadata">'
            f'<source src="{wav_data_uri(samples, sample_rate)}" type="audio/wav"></audio></figure>')


def choose_excerpt(clip: Audio, tl: Timeline, target: str, max_seconds: float) -> Excerpt:
    """At most ``max_seconds`` centred on the window where ``target`` is highest."""
    if clip.duration <= max_seconds:
        return Excerpt(clip, 0.0, True)
    centre = float(tl.centres[int(np.argmax(tl.series(target)))])
    start = min(max(0.0, centre - max_seconds / 2), clip.duration - max_seconds)
    a, n = int(round(start * clip.sample_rate)), int(round(max_seconds * clip.sample_rate))
    part = Audio(clip.samples[a:a + n], clip.sample_rate, clip.source, clip.original_sample_rate,
                 clip.original_channels)
    return Excerpt(part, a / clip.sample_rate, False)


def value_of(model: AudioModel, samples: np.ndarray, sample_rate: int, name: str) -> float:
    """What the model says about ``name`` (a target or concept) for this audio alone."""
    if isinstance(model, TwoStageModel):
        e = model.explain(samples, sample_rate=sample_rate)
        values = dict(zip(e.target_names + e.concept_names, [*e.targets, *e.concepts]))
        return float(values[name])
    return float(model.predict_targets(samples, sample_rate=sample_rate)[model.config.target_names.index(name)])


def listening_section(model: AudioModel, excerpt: Excerpt, name: str, maps: AttributionMaps, *,
                      wav_dir: str | Path | None = None, **split_options: Any) -> str:
    """Players for the splits of ``listen.listenable_parts``, with the model's value on each part.

    With ``wav_dir`` each part and rest is also written there as a WAV file.
    """
    clip, sr = excerpt.audio, excerpt.audio.sample_rate
    whole = value_of(model, clip.samples, sr, name)
    out = [player(clip.samples, sr, f"the excerpt as the model hears it ({name} = {whole:.3f})")]
    for split in listenable_parts(model, clip, name, maps, **split_options):
        error = float(np.max(np.abs(split.part + split.rest - clip.samples)))
        out.append(f"<h3>{html.escape(split.kind)}</h3><p>{html.escape(split.description)}; "
                   f"part + rest reconstructs the excerpt to {error:.1e}.</p><div class='pair'>")
        for samples, label in ((split.part, split.part_label), (split.rest, split.rest_label)):
            value = value_of(model, samples, sr, name)
            out.append(player(samples, sr, f"{label}: {name} = {value:.3f}"))
        out.append("</div>")
        if wav_dir is not None:
            split.write(wav_dir, f"{safe_stem(clip.source)}_{name}_{split.kind}")
    return "".join(out)


def maps_for(model: AudioModel, excerpt: Excerpt, method: str) -> tuple[AttributionMaps, AttributionMaps | None]:
    """(target maps, concept maps or None). Two-stage: the exact head on top of the concepts' maps."""
    if isinstance(model, TwoStageModel):
        concepts = posthoc_maps(model, excerpt.audio, method, outputs="concepts")
        return target_maps(model, concepts), concepts
    return posthoc_maps(model, excerpt.audio, method, outputs="targets"), None


def build_report(model: AudioModel, audio: Any, *, target: str | None = None, sample_rate: int | None = None,
                 method: str = "integrated_gradients", posthoc: Sequence[str] = (),
                 window_seconds: float | None = None, hop_seconds: float | None = None,
                 max_seconds: float = 30.0, segment_seconds: float = 3.0, n_segments: int = 2,
                 tf_fraction: float = 0.1, listen: str | None = None, card: str | Path | None = None,
                 wav_dir: str | Path | None = None) -> str:
    """The report's HTML text (see ``write_report``).

    ``listen``: the target or concept the listening views split the excerpt for (default: the
    target); ``wav_dir``: also write those splits there as WAV files; ``card``: a model card
    file (default: ``model_cards/<name>.md``, then the package's ``zoo/cards``).
    """
    require_all(("matplotlib", "captum", "librosa", "yaml"), "report", "the HTML report")  # before any work
    from .views_plotting import plot_map_grid

    clip = model.read_audio(audio, sample_rate=sample_rate)
    tl = timeline(model, clip, window_seconds=window_seconds, hop_seconds=hop_seconds)
    target = target or choose_target(model, tl.track_targets)
    if target not in model.config.target_names:
        raise ConfigError(f"target: unknown target {target!r}; {model.name} has {model.config.target_names}")
    listen = listen or target
    if listen != target and listen not in tl.concept_names:
        raise ConfigError(f"listen: {listen!r} is neither the report's target ({target}) nor a concept "
                          f"of {model.name} {tl.concept_names}")
    excerpt = choose_excerpt(clip, tl, target, max_seconds)
    span = ("the whole track" if excerpt.whole_track else
            f"{excerpt.start:.1f}-{excerpt.start + excerpt.audio.duration:.1f} s of the track")
    title = f"{Path(clip.source).name}: explanation by {model.name}"
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p>{clip.duration:.1f} s; explained target: <b>{html.escape(target)}</b>; spectrogram and "
            f"listening views cover {span}.</p>"]
    notes = list(model.config.metadata.get("notes", []))
    body += [f'<p class="note">note: {html.escape(n)}</p>' for n in notes]
    body.append("<h2>Model card</h2>" + card_section(model, card))

    body.append("<h2>Track</h2>")
    if tl.track is not None:
        body.append("<p>target = intercept + sum of concept contributions (exact):</p>" + table(tl.track.to_frame()))
        body.append(img(tl.track.plot(), "contribution bar chart"))
    else:
        body.append(table(pd.DataFrame([tl.track_targets], columns=tl.target_names), index=False))

    body.append("<h2>Over time</h2>")
    body.append(img(tl.plot(targets=[target]), f"timeline of {target}"))
    rows = tl.to_frame()
    body.append(f"<details><summary>per-window table for {html.escape(target)} ({len(tl.starts)} windows of "
                f"{tl.window_seconds:g} s, hop {tl.hop_seconds:g} s)</summary>"
                f"{table(rows[rows['target'] == target].drop(columns='target'), index=False)}</details>")
    if tl.concepts is not None:
        body.append(f"<details><summary>concepts per window</summary>"
                    f"{table(tl.concept_frame(), index=False)}</details>")

    body.append("<h2>Over the spectrogram</h2>")
    main, concepts = maps_for(model, excerpt, method)
    body.append(img(main.plot(target), f"{method} map of {target}"))
    if concepts is not None:
        body.append("<p>Each concept's map; the target's map above is their sum weighted by the head.</p>")
        body.append(img(plot_map_grid(concepts), "concept maps"))
    for extra in posthoc:
        other, _ = maps_for(model, excerpt, extra)
        body.append(f"<h3>post hoc: {html.escape(extra.replace('_', ' '))}</h3>" + img(other.plot(target), extra))

    body.append("<h2>To listen to</h2>")
    body.append(listening_section(model, excerpt, listen, main if listen == target else concepts, wav_dir=wav_dir,
                                  segment_seconds=segment_seconds, n_segments=n_segments, tf_fraction=tf_fraction))
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>")


#: the report formats: the interactive page (default) and the static one with PNG figures
FORMATS = ("html", "png")


def write_report(model: AudioModel, audio: Any, out_html: str | Path, *, target: str | None = None,
                 format: str = "html", **options: Any) -> Path:
    """Write the self-contained HTML report atomically.

    ``format``: ``html`` (interactive; options as in ``interactive.build_interactive_report``) or
    ``png`` (static figures; options as in ``build_report``). ``method=None`` is each format's default.
    """
    if format not in FORMATS:
        raise ConfigError(f"format: {format!r} is not one of {list(FORMATS)}")
    out = Path(out_html)
    if format == "html":
        from .interactive import build_interactive_report

        text = build_interactive_report(model, audio, target=target, **options)
    else:
        if options.get("method") is None:
            options.pop("method", None)
        text = build_report(model, audio, target=target, **options)
    atomic_write_text(out, text)
    return out
