"""The interactive report: one self-contained HTML page where the track, its timeline and its maps move together.

What the page holds (``report_page`` has the markup, style and script):

* the track as the model hears it (mono, at most 22.05 kHz), compressed (Ogg Vorbis, about 47 kb/s:
  ~1.2 MB for 3.5 minutes), in an ``<audio>`` player whose position moves a cursor over every view;
* the data as one compact JSON block (floats rounded to 4 decimals): the track's predictions with
  their exact decomposition (intercept + concept contributions, always in view), and per window of
  the timeline the concepts, the targets and the contributions;
* the attribution maps over the whole track, computed once at the resolution the page draws them:
  about 960 columns (each the sum of the frames it covers) by 75 bands (pairs of the front-end's
  149), quantised to 8 bits (square-root companded, so weak cells keep some resolution) and stored
  as one grey PNG per method, the display spectrogram as another. A two-stage model's maps are
  its concepts'; a target's map is their sum weighted by the head's secant slopes
  (``attribution.target_maps``), done in the page, so switching target or concept redraws
  without the page holding one image per pair;
* per target and concept, its listenable part: the timeline window where it is highest (played
  from the track itself) and, within that window, the time-frequency cells its attribution
  scores highest, resynthesised (``listen.split_time_frequency``) and embedded as a short Ogg clip.

The plots are a few bar and line charts and one image per view, drawn with plain canvas code in
the page. No plotting library is vendored: the smallest that would do (Chart.js, ~200 kB
minified; Plotly ~3.5 MB) would outweigh the data of a typical report, bring features the page
does not use, and need keeping up to date; the page's own script is a few hundred lines, and
it runs offline in any current browser.

Cost: the maps default to ``gradient x input`` on windows that tile the track (the model's window
length as hop: each frame attributed once, half the windows of the model's half-window hop), all
outputs' gradients from one forward pass per batch (``attribution.gradient_x_input_outputs``).
Other methods (``--map-method``) go through captum per output and cost more (integrated gradients:
its 32 steps, about 30 times as much).
"""

from __future__ import annotations

import base64
import io
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import soundfile as sf
import torch

from .._extras import require_all
from ..audio import Audio, pad_to_length
from ..config import ConfigError
from ..model import AudioModel, TwoStageModel, window_starts
from ..numerics import eval_mode, flush_denormals
from .attribution import AttributionMaps, secant_slopes, track_maps
from .listen import Listenable, _istft, _stft, bins_from_bands, split_time, top_cells, top_segments
from .posthoc import POSTHOC
from .report_parts import card_section, choose_target, safe_stem
from .report_page import render_page
from .timeline import Timeline, timeline

#: the embedded track's and parts' highest sample rate (the page is for listening, not for analysis)
AUDIO_RATE = 22050
#: libsndfile's Vorbis compression level (0: best quality, 1: smallest); 0.6 is about 47 kb/s mono at 22.05 kHz
VORBIS_LEVEL = 0.6
#: samples per write: one write of a whole track crashed libsndfile 1.2.2's Ogg encoder (a segfault)
WRITE_BLOCK = 1 << 15


#: the embedded audio's formats: (libsndfile format, subtype, MIME type)
AUDIO_FORMATS = {"ogg": ("OGG", "VORBIS", "audio/ogg"), "mp3": ("MP3", "MPEG_LAYER_III", "audio/mpeg")}


def encode_audio(samples: np.ndarray, sample_rate: int, fmt: str = "ogg") -> tuple[bytes, str]:
    """(bytes, MIME type) of mono ``samples`` compressed (``AUDIO_FORMATS``), clipped to [-1, 1] block by block."""
    if fmt not in AUDIO_FORMATS:
        raise ConfigError(f"audio_format: {fmt!r} is not one of {sorted(AUDIO_FORMATS)}")
    samples = np.asarray(samples, dtype=np.float32)
    if sample_rate > AUDIO_RATE:
        import soxr

        samples = soxr.resample(samples, sample_rate, AUDIO_RATE).astype(np.float32)
        sample_rate = AUDIO_RATE
    container, subtype, mime = AUDIO_FORMATS[fmt]
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", sample_rate, 1, format=container, subtype=subtype,
                      compression_level=VORBIS_LEVEL) as out:
        for i in range(0, len(samples), WRITE_BLOCK):
            out.write(np.clip(samples[i:i + WRITE_BLOCK], -1.0, 1.0))
    return buf.getvalue(), mime


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def grey_png(pixels: np.ndarray) -> bytes:
    """An 8-bit greyscale PNG of (height, width) uint8 ``pixels`` (rows filtered by their left neighbour)."""
    height, width = pixels.shape
    diff = np.diff(pixels.astype(np.int16), axis=1, prepend=0).astype(np.uint8)  # PNG filter 1 ("sub")
    raw = np.concatenate([np.ones((height, 1), dtype=np.uint8), diff], axis=1).tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def compand(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 codes, (D,) scales) of (D, ...) maps: ``v = sign(q - 128) ((q - 128) / 127)^2 scale``."""
    scale = np.abs(maps).reshape(len(maps), -1).max(axis=1)
    scale = np.where(scale > 0, scale, 1.0)
    unit = maps / scale.reshape(-1, *[1] * (maps.ndim - 1))
    codes = 128 + np.rint(127 * np.sign(unit) * np.sqrt(np.abs(unit)))
    return codes.astype(np.uint8), scale


def band_pairs(values: np.ndarray, *, mean: bool) -> np.ndarray:
    """(..., bands, N) -> (..., ceil(bands / 2), N): neighbouring bands summed (or averaged), highest first."""
    bands = values.shape[-2]
    edges = np.arange(0, bands, 2)
    out = np.add.reduceat(values, edges, axis=-2)
    if mean:
        out = out / np.diff(np.r_[edges, bands])[:, None]
    return np.flip(out, axis=-2)


def rounded(values: Any, digits: int = 4) -> Any:
    """Nested lists of floats rounded to ``digits`` decimals (a compact JSON)."""
    if isinstance(values, (np.ndarray, list, tuple)):
        return [rounded(v, digits) for v in values]
    return round(float(values), digits)


def frame_step_for(model: AudioModel, n_samples: int, columns: int) -> int:
    """Frames per map column so that the track fits in about ``columns`` columns (1 for short tracks)."""
    return max(1, -(-model.frontend.n_frames(max(n_samples, model.config.window_samples)) // columns))


def map_layer(maps: AttributionMaps, label: str) -> dict[str, Any]:
    """The page's record of one method's maps: a PNG of every output's map stacked, and how to decode it."""
    codes, scale = compand(band_pairs(maps.maps, mean=False))
    d, bands, columns = codes.shape
    return {"method": maps.method, "label": label, "names": maps.names, "bands": bands, "columns": columns,
            "scales": [float(f"{v:.6g}") for v in scale], "checksum": int(codes.sum(dtype=np.int64)),
            "png": data_uri(grey_png(codes.reshape(d * bands, columns)), "image/png")}


def spectrogram_layer(maps: AttributionMaps) -> dict[str, Any]:
    """The display spectrogram (log10(1 + magnitude)) as an 8-bit grey PNG, 0 to its maximum."""
    spec = band_pairs(maps.spectrogram, mean=True)
    top = float(spec.max()) or 1.0
    codes = np.rint(np.clip(spec / top, 0, 1) * 255).astype(np.uint8)
    low, high = maps.band_frequencies[::2], maps.band_frequencies[1::2]
    centres = np.sqrt(low[:len(high)] * high)
    if len(low) > len(high):
        centres = np.r_[centres, low[-1]]
    step = float(maps.frame_times[1] - maps.frame_times[0]) if len(maps.frame_times) > 1 else 1.0
    return {"png": data_uri(grey_png(codes), "image/png"), "checksum": int(codes.sum(dtype=np.int64)),
            "bands": codes.shape[0], "columns": codes.shape[1], "max": round(top, 4),
            "frequencies": rounded(centres[::-1], 1), "t0": round(float(maps.frame_times[0]) - step / 2, 5),
            "dt": round(step, 6)}


def window_values(model: AudioModel, clip: Audio, tl: Timeline, starts: Sequence[int],
                  hop: int) -> dict[str, np.ndarray]:
    """{target or concept: (len(starts),) values} on the model's windows at ``starts`` (samples, every ``hop``).

    Read off the timeline when it has those windows (the default: the model's windows include the
    tiles), else from a timeline of them; clipped as the timeline's are.
    """
    sr, window = model.config.sample_rate, model.config.window_samples
    have = {int(round(s * sr)): w for w, s in enumerate(tl.starts)}
    if int(round(tl.window_seconds * sr)) != window or any(s not in have for s in starts):
        tl = timeline(model, clip, window_seconds=window / sr, hop_seconds=hop / sr)
        have = {int(round(s * sr)): w for w, s in enumerate(tl.starts)}
    rows = [have[s] for s in starts]
    return {name: tl.series(name)[rows] for name in [*tl.target_names, *tl.concept_names]}


def listening_windows(model: AudioModel, values: dict[str, np.ndarray], starts: Sequence[int],
                      n_segments: int) -> tuple[dict[str, list[int]], dict[int, list[int]]]:
    """({name: start samples of its ``n_segments`` highest windows, not overlapping}, the maps to keep).

    The second is ``track_maps``' ``keep``: per window, the outputs whose single-window map a part
    needs (a two-stage target's map is its concepts' maps weighted by the head: all of them).
    """
    sr, window = model.config.sample_rate, model.config.window_samples
    by_second = {s / sr: s for s in starts}
    seconds = np.asarray(starts) / sr
    chosen = {name: [by_second[a] for a, _ in top_segments(seconds, window / sr, v, n_segments)]
              for name, v in values.items()}
    two_stage = isinstance(model, TwoStageModel)
    explained = list(model.config.concept_names if two_stage else model.config.target_names)
    keep: dict[int, set[int]] = {}
    for name, picked in chosen.items():
        needs = range(len(explained)) if two_stage and name not in explained else [explained.index(name)]
        for start in picked:
            keep.setdefault(start, set()).update(needs)
    return chosen, {start: sorted(indices) for start, indices in keep.items()}


def listenable_items(model: AudioModel, clip: Audio, maps: AttributionMaps, chosen: dict[str, list[int]],
                     values: dict[str, np.ndarray], starts: Sequence[int], *, slopes: np.ndarray | None,
                     tf_fraction: float = 0.1, gap_seconds: float = 0.3) -> dict[str, dict[str, Any]]:
    """Per target and concept: its top window(s) and, within them, its time-frequency part.

    The part is ``listen.split_time_frequency`` of the window: the ``tf_fraction`` of STFT cells its
    single-window map (``maps.windows``; a two-stage target's is its concepts' weighted by
    ``slopes``) scores highest, resynthesised. Each window's STFT is shared by every name it is
    the top window of; the values on the parts come from one batched pass. Several windows are
    joined with ``gap_seconds`` of silence. Returns per name: ``spans`` (seconds), ``window_value``
    and ``part_value`` (means over its windows), ``part_samples`` and ``splits`` (a ``Listenable``
    per window, part and rest summing to the window).
    """
    cfg, fe, sr = model.config, model.config.frontend, clip.sample_rate
    filterbank, n = model.frontend.filterbank.numpy(), cfg.window_samples
    explained = maps.names
    audio, stfts, parts = {}, {}, {}
    for name, picked in chosen.items():
        for start in picked:
            if start not in audio:
                audio[start], _ = pad_to_length(clip.samples[start:start + n], n)
                stfts[start] = _stft(audio[start], fe.n_fft, fe.hop_length)
            if name in explained:
                attr = maps.windows[start, explained.index(name)]
            else:  # a two-stage model's target
                t = cfg.target_names.index(name)
                attr = sum(slopes[t, k] * maps.windows[start, k] for k in range(len(explained)))
            stft = stfts[start]
            mask = np.zeros(tuple(stft.shape))
            cells = top_cells(bins_from_bands(attr, filterbank), tf_fraction)
            frames = min(mask.shape[1], cells.shape[1])
            mask[:, :frames] = cells[:, :frames]
            parts[name, start] = _istft(stft * torch.from_numpy(mask), fe.n_fft, fe.hop_length, n).astype(np.float32)
    keys = list(parts)
    with eval_mode(model), torch.inference_mode(), flush_denormals():
        outputs = [model.clip_outputs(model.outputs_from_spectrogram(model.frontend(
            torch.from_numpy(np.stack([parts[k] for k in keys[i:i + 8]]))))).double().numpy()
            for i in range(0, len(keys), 8)]
    outputs = np.concatenate(outputs) if outputs else np.zeros((0, len(explained)))
    if isinstance(model, TwoStageModel):
        outputs = np.concatenate([outputs, model.head.predict(outputs)], axis=1)
        explained = [*explained, *cfg.target_names]
    on_part = {key: row[explained.index(key[0])] for key, row in zip(keys, outputs)}
    gap = np.zeros(int(round(gap_seconds * sr)), dtype=np.float32)
    index = {s: i for i, s in enumerate(starts)}
    result = {}
    for name, picked in chosen.items():
        pieces = [parts[name, s] for s in picked]
        result[name] = {
            "spans": [[s / sr, (s + n) / sr] for s in picked],
            "window_value": float(np.mean([values[name][index[s]] for s in picked])),
            "part_value": float(np.mean([on_part[name, s] for s in picked])),
            "part_samples": np.concatenate([x for p in pieces for x in (p, gap)][:-1]),
            "splits": [Listenable("time-frequency", f"the top {tf_fraction:.0%} time-frequency cells of "
                                  f"{s / sr:.1f}-{(s + n) / sr:.1f} s by their attribution to {name}",
                                  parts[name, s], audio[s] - parts[name, s], sr,
                                  part_label=f"top {tf_fraction:.0%} cells", rest_label="the other cells")
                       for s in picked],
        }
    return result


def build_interactive_report(model: AudioModel, audio: Any, *, target: str | None = None,
                             sample_rate: int | None = None, method: str | None = None,
                             posthoc: Sequence[str] = (), window_seconds: float | None = None,
                             hop_seconds: float | None = None, listen: str | None = None,
                             card: str | Path | None = None, wav_dir: str | Path | None = None,
                             n_segments: int = 1, tf_fraction: float = 0.1, map_hop_seconds: float | None = None,
                             columns: int = 960, audio_format: str = "ogg", max_seconds: float | None = None) -> str:
    """The interactive report's HTML text (module docstring; ``report.write_report`` writes it).

    ``method``: the maps' attribution method (default ``gradient_x_input``), ``posthoc`` more methods
    to switch between; ``window_seconds``/``hop_seconds``: the timeline's windows (default: the
    model's); ``listen``: the target or concept selected when the page opens (default: ``target``,
    itself by default the one furthest from mid-scale); ``map_hop_seconds``: the maps' hop (default:
    the model's window length, tiling the track; the model's hop gives the track's mean over its own
    windows at twice the cost); ``n_segments``: windows (of the maps') each name's listenable part
    covers; ``columns``: the maps' width; ``wav_dir``: also write the ``listen`` item's parts and
    rests as WAV files. ``max_seconds`` (the static report's excerpt) does not apply: every view
    covers the whole track.
    """
    method = method or "gradient_x_input"
    # before any work: PyYAML reads the model card; captum runs every method but gradient x input
    require_all(("yaml", *(["captum"] if {method, *posthoc} - {"gradient_x_input"} else [])), "report",
                "the HTML report")
    if audio_format not in AUDIO_FORMATS:
        raise ConfigError(f"audio_format: {audio_format!r} is not one of {sorted(AUDIO_FORMATS)}")
    for name in (method, *posthoc):
        if name not in POSTHOC:
            raise ConfigError(f"map method: unknown method {name!r}; choose from {sorted(POSTHOC)}")
    two_stage = isinstance(model, TwoStageModel)
    cfg = model.config
    if target is not None and target not in cfg.target_names:
        raise ConfigError(f"target: unknown target {target!r}; {model.name} has {cfg.target_names}")
    concept_names = list(cfg.concept_names) if two_stage else []
    if listen is not None and listen != target and listen not in [*cfg.target_names, *concept_names]:
        raise ConfigError(f"listen: {listen!r} is neither a target {cfg.target_names} nor a concept of "
                          f"{model.name} {concept_names}")

    clip = model.read_audio(audio, sample_rate=sample_rate)
    with ThreadPoolExecutor(1) as pool:  # the track's encoder runs beside the network (it releases the GIL)
        track_audio = pool.submit(encode_audio, clip.samples, clip.sample_rate, audio_format)
        tl = timeline(model, clip, window_seconds=window_seconds, hop_seconds=hop_seconds)
        data = _build(model, clip, tl, target=target, method=method, posthoc=posthoc, listen=listen,
                      wav_dir=wav_dir, n_segments=n_segments, tf_fraction=tf_fraction,
                      map_hop_seconds=map_hop_seconds, columns=columns, audio_format=audio_format)
        track_uri = data_uri(*track_audio.result())
    title = f"{Path(clip.source).name}: explanation by {model.name}"
    return render_page(title=title, data=data, track_uri=track_uri, card_html=card_section(model, card))


def _build(model: AudioModel, clip: Audio, tl: Timeline, *, target: str | None, method: str, posthoc: Sequence[str],
           listen: str | None, wav_dir: str | Path | None, n_segments: int, tf_fraction: float,
           map_hop_seconds: float | None, columns: int, audio_format: str) -> dict[str, Any]:
    """The page's data for ``build_interactive_report`` (everything but the track's audio)."""
    cfg, two_stage = model.config, isinstance(model, TwoStageModel)
    target = target or choose_target(model, tl.track_targets)
    listen = listen or target

    # the maps' windows (tiles by default), and the ones each name's listenable part comes from
    map_hop = max(1, int(round((map_hop_seconds or cfg.window_seconds) * cfg.sample_rate)))
    starts = window_starts(max(len(clip.samples), cfg.window_samples), cfg.window_samples, map_hop)
    values = window_values(model, clip, tl, starts, map_hop)
    chosen, keep = listening_windows(model, values, starts, n_segments)

    step = frame_step_for(model, len(clip.samples), columns)
    outputs = "concepts" if two_stage else "targets"
    layers, main = [], None
    for name in dict.fromkeys((method, *posthoc)):
        maps = track_maps(model, clip, POSTHOC[name], outputs=outputs, method=name, hop_seconds=map_hop / cfg.sample_rate,
                          frame_step=step, batch_size=8, keep=None if main else keep)
        main = main or maps
        layers.append(map_layer(maps, name.replace("_", " ")))
    slopes = secant_slopes(model, main.outputs, main.baseline_outputs) if two_stage else None
    items = listenable_items(model, clip, main, chosen, values, starts, slopes=slopes, tf_fraction=tf_fraction)
    if wav_dir is not None:
        stem = f"{safe_stem(clip.source)}_{listen}"
        split_time(clip.samples, clip.sample_rate, items[listen]["spans"]).write(wav_dir, f"{stem}_time")
        for i, split in enumerate(items[listen]["splits"]):
            split.write(wav_dir, f"{stem}_time-frequency" + (f"-{i + 1}" if i else ""))
    parts = {name: {"spans": rounded(item["spans"], 3), "window": round(item["window_value"], 4),
                    "part": round(item["part_value"], 4),
                    "audio": data_uri(*encode_audio(item["part_samples"], clip.sample_rate, audio_format))}
             for name, item in items.items()}
    return page_data(model, clip, tl, main, layers, parts, slopes, target=target, listen=listen,
                     tf_fraction=tf_fraction, listen_seconds=cfg.window_seconds)


def page_data(model: AudioModel, clip: Audio, tl: Timeline, maps: AttributionMaps, layers: list[dict[str, Any]],
              parts: dict[str, Any], slopes: np.ndarray | None, *, target: str, listen: str, tf_fraction: float,
              listen_seconds: float) -> dict[str, Any]:
    """Everything the page's script reads (JSON)."""
    cfg = model.config
    two_stage = tl.contributions is not None
    duration, spectrogram = float(clip.duration), spectrogram_layer(maps)
    xmax = max(duration, float(tl.ends[-1]), spectrogram["t0"] + spectrogram["columns"] * spectrogram["dt"])
    data: dict[str, Any] = {
        "source": Path(clip.source).name, "model": model.name, "duration": round(duration, 3), "xmax": round(xmax, 3),
        "targets": list(cfg.target_names), "concepts": list(tl.concept_names) if two_stage else [],
        "targetScale": list(cfg.target_scale), "target": target, "listen": listen,
        "notes": list(tl.track.notes) if two_stage else [], "flags": tl.track.flags() if two_stage else [],
        "trackTargets": rounded(tl.track_targets),
        "windows": {"starts": rounded(tl.starts, 3), "length": round(tl.window_seconds, 4),
                    "hop": round(tl.hop_seconds, 4), "outputs": rounded(tl.outputs)},
        "maps": layers, "spectrogram": spectrogram, "parts": parts,
        "listening": {"fraction": tf_fraction, "seconds": round(listen_seconds, 3)},
    }
    if two_stage:
        track = tl.track
        track_error = np.abs(track.intercept + track.contributions.sum(-1) - track.targets).max()
        window_error = np.abs(tl.intercept + tl.contributions.sum(-1) - tl.outputs).max()
        data.update({
            "intercept": rounded(track.intercept), "trackConcepts": rounded(track.concepts),
            "trackContributions": rounded(track.contributions),
            "slopes": rounded(slopes, 6), "sumError": float(f"{max(track_error, window_error):.1e}"),
        })
        data["windows"].update({"concepts": rounded(tl.concepts), "contributions": rounded(tl.contributions)})
    else:
        data.update(notes=[*cfg.metadata.get("notes", []), *clip.notes], flags=list(clip.flags))
    return data

