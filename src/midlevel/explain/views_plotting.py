"""Figures for the time and time-frequency views (``matplotlib.figure.Figure``: no pyplot, no backend needed).

Spectrogram axes are physical: seconds on x (frame centres at ``frame * hop / sample_rate``),
Hz on a logarithmic y axis with cell edges halfway (geometrically) between band centres.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from ..plotting import save_png


def bars(ax, x: np.ndarray, width: float, bottom: np.ndarray, top: np.ndarray, **kwargs) -> None:
    """Bars from ``bottom`` to ``top`` centred on ``x`` as one artist (a Rectangle per bar would
    make a 20-minute track's figure many times heavier than a 1-minute one's)."""
    xs = np.stack([x - width / 2, x + width / 2, x + width / 2], axis=1).ravel()

    def with_gaps(v: np.ndarray) -> np.ndarray:  # a NaN after each bar breaks the polygon
        return np.stack([v, v, np.full(len(v), np.nan)], axis=1).ravel()

    ax.fill_between(xs, with_gaps(bottom), with_gaps(top), linewidth=0, **kwargs)


def plot_timeline(tl, path: str | Path | None = None, *, targets: list[str] | None = None):
    """Per target: concept contributions stacked per window around 0, the window's total as a line.

    Beneath, each concept's value per window. Black boxes get their target curves only.
    """
    names = targets or tl.target_names
    has_terms = tl.contributions is not None
    rows = len(names) + 1 if has_terms else 1
    fig = Figure(figsize=(9, 1.9 * rows + 0.8))
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)
    axes = axes[:, 0]
    x, width = tl.centres, 0.9 * min(tl.hop_seconds, tl.window_seconds)
    colours = matplotlib.colormaps["tab10"](np.arange(len(tl.concept_names)) % 10)
    if has_terms:
        for ax, name in zip(axes, names):
            t = tl.target_names.index(name)
            terms = tl.contributions[:, t, :]
            up, down = np.zeros(len(x)), np.zeros(len(x))
            for k, concept in enumerate(tl.concept_names):
                v = terms[:, k]
                bottom = np.where(v >= 0, up, down)
                bars(ax, x, width, bottom, bottom + v, color=colours[k], label=concept)
                up, down = up + np.clip(v, 0, None), down + np.clip(v, None, 0)
            ax.plot(x, tl.outputs[:, t] - tl.intercept[t], "k.-", label="sum (output - intercept)")
            ax.axhline(0, color="black", linewidth=0.6)
            ax.set_ylabel(f"{name}\n(intercept {tl.intercept[t]:.2f})", fontsize=8)
        axes[0].legend(fontsize=7, ncol=4, loc="upper left", bbox_to_anchor=(0, 1.45), frameon=False)
        curves, ax_c = tl.concepts, axes[-1]
        for k, concept in enumerate(tl.concept_names):
            ax_c.plot(x, curves[:, k], ".-", color=colours[k], label=concept)
        ax_c.set_ylabel("concept value", fontsize=8)
    else:
        ax_c = axes[0]
        for t, name in enumerate(tl.target_names):
            if name in names:
                ax_c.plot(x, tl.outputs[:, t], ".-", label=name)
        ax_c.set_ylabel("target value", fontsize=8)
        ax_c.legend(fontsize=7, ncol=4, frameon=False)
    ax_c.set_xlabel("time (s), window centres")
    ax_c.set_xlim(0, max(tl.duration, float(tl.ends[-1])))
    fig.suptitle(f"Over time: {Path(tl.source).name} ({tl.window_seconds:g} s windows, hop {tl.hop_seconds:g} s)",
                 fontsize=10)
    fig.tight_layout()
    return save_png(fig, path, dpi=100)


def cell_edges(centres: np.ndarray, *, log: bool) -> np.ndarray:
    """Cell boundaries halfway between centres (geometrically if ``log``), extended at both ends."""
    c = np.log(centres) if log else np.asarray(centres, dtype=np.float64)
    if len(c) == 1:
        edges = np.array([c[0] - 0.5, c[0] + 0.5])
    else:
        mid = (c[1:] + c[:-1]) / 2
        edges = np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])
    return np.exp(edges) if log else edges


def draw_spectrogram(ax, maps, values: np.ndarray, **kwargs):
    """``values`` (bands, frames) on the maps' time (s) and frequency (Hz, log) axes."""
    t_edges = cell_edges(maps.frame_times, log=False)
    f_edges = cell_edges(maps.band_frequencies, log=True)
    mesh = ax.pcolormesh(t_edges, f_edges, values, shading="flat", rasterized=True, **kwargs)
    ax.set_yscale("log")
    ax.set_ylim(f_edges[0], f_edges[-1])
    ax.set_xlim(t_edges[0], t_edges[-1])
    ax.set_ylabel("frequency (Hz)", fontsize=8)
    return mesh


def diverging_norm(values: np.ndarray) -> TwoSlopeNorm:
    """Symmetric around 0, scaled to the 99.5th percentile of |values| so one cell does not wash out the rest."""
    vmax = float(np.percentile(np.abs(values), 99.5)) or float(np.abs(values).max()) or 1.0
    return TwoSlopeNorm(0.0, -vmax, vmax)


def plot_attribution(maps, name: str, path: str | Path | None = None):
    """Spectrogram, the attribution of ``name`` over it, and its sum over frequency against time."""
    values = maps.map(name)
    fig = Figure(figsize=(9, 7))
    grid = fig.add_gridspec(3, 2, width_ratios=[50, 1], height_ratios=[2, 2, 1])
    ax_s = fig.add_subplot(grid[0, 0])
    ax_a = fig.add_subplot(grid[1, 0], sharex=ax_s)
    ax_t = fig.add_subplot(grid[2, 0], sharex=ax_s)
    mesh = draw_spectrogram(ax_s, maps, maps.spectrogram, cmap="magma")
    fig.colorbar(mesh, cax=fig.add_subplot(grid[0, 1]), label="log10(1 + magnitude)")
    ax_s.set_title(f"{Path(maps.source).name}: spectrogram", fontsize=9)
    draw_spectrogram(ax_a, maps, maps.spectrogram, cmap="Greys", alpha=0.5)
    norm, cmap = diverging_norm(values), matplotlib.colormaps["RdBu_r"]
    rgba = cmap(norm(values))
    rgba[..., 3] = np.clip(np.abs(values) / norm.vmax, 0, 1)  # small attributions let the spectrogram show
    draw_spectrogram(ax_a, maps, rgba)
    fig.colorbar(ScalarMappable(norm, cmap), cax=fig.add_subplot(grid[1, 1]), label="attribution")
    d = maps.names.index(name)
    ax_a.set_title(f"{name} ({maps.kind}, {maps.method.replace('_', ' ')}): {maps.outputs[d]:.3f}, "
                   f"silence {maps.baseline_outputs[d]:.3f}; red pushes up, blue down", fontsize=9)
    ax_t.plot(maps.frame_times, maps.over_time(name), color="black", linewidth=0.8)
    ax_t.axhline(0, color="grey", linewidth=0.5)
    ax_t.set_ylabel("sum over\nfrequency", fontsize=8)
    ax_t.set_xlabel("time (s)")
    if maps.duration < maps.frame_times[-1]:
        for ax in (ax_s, ax_a, ax_t):
            ax.axvline(maps.duration, color="cyan", linestyle="--", linewidth=0.8)
    for ax in (ax_s, ax_a):
        ax.tick_params(labelbottom=False)
    fig.tight_layout()
    return save_png(fig, path, dpi=100)


def plot_map_grid(maps, path: str | Path | None = None, *, names: list[str] | None = None):
    """Small multiples: one attribution map per output, each on its own symmetric colour scale."""
    names = names or maps.names
    cols = min(2, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(5 * cols, 2.4 * rows + 0.6))
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)
    for ax, name in zip(axes.flat, names):
        values = maps.map(name)
        draw_spectrogram(ax, maps, values, cmap="RdBu_r", norm=diverging_norm(values))
        ax.set_title(name, fontsize=9)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("time (s)")
    fig.suptitle(f"{maps.kind} attribution ({maps.method.replace('_', ' ')}), red: pushes up, blue: down",
                 fontsize=10)
    fig.tight_layout()
    return save_png(fig, path, dpi=100)
