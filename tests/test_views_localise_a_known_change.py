"""The views point at the right moment: clusters injected only in seconds 4-6 of a controlled clip.

The same chorale excerpt is rendered twice with the corpus generator, once plain and once with the
dissonance factor at its maximum (clusters and tritones below the melody at every onset); the clip
is the plain render with the clustered one crossfaded in for seconds 4-6 only. Every other factor
is identical, so the only thing that changes over time is the injected dissonance.
"""

import numpy as np
import pytest

import midlevel
from midlevel.datasets.controlled import RenderDependencyError, load_piece, neutral_factors, realize, render_clip
from midlevel.datasets.controlled import render as render_mod
from midlevel.explain.attribution import concept_maps
from midlevel.explain.timeline import timeline
from midlevel.zoo.explain_head import head_slopes

try:
    render_mod.check_dependencies()
except RenderDependencyError:
    pytest.skip("fluidsynth / FluidR3_GM.sf2 not installed", allow_module_level=True)

SR = 22050
SPAN = (4.0, 6.0)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    piece = load_piece("bach/bwv153.1.mxl", tmp_path_factory.mktemp("music21_cache"))

    def render(**overrides):
        clip = realize(piece, neutral_factors(piece, 0.0, ensemble="strings", **overrides), 10.0, key=(7, 7))
        return render_clip(clip)[0]

    plain, clustered = render(), render(cluster_rate=1.0)
    fade = int(0.03 * SR)
    a, b = int(SPAN[0] * SR), int(SPAN[1] * SR)
    mask = np.zeros(len(plain))
    mask[a:b] = 1.0
    mask[a - fade:a], mask[b:b + fade] = np.linspace(0, 1, fade), np.linspace(1, 0, fade)
    return (plain * (1 - mask) + clustered * mask).astype(np.float32)


@pytest.fixture(scope="module")
def model():
    return midlevel.zoo.default_model()


def test_dissonance_over_time_peaks_in_the_injected_span(clip, model):
    tl = timeline(model, clip, sample_rate=SR, window_seconds=2.0, hop_seconds=0.25)
    centres, dissonance = tl.centres, tl.series("dissonance")
    assert SPAN[0] <= centres[np.argmax(dissonance)] <= SPAN[1]
    inside = dissonance[(centres >= 4.5) & (centres <= 5.5)]  # windows wholly inside the span
    outside = dissonance[(centres <= SPAN[0] - 1) | (centres >= SPAN[1] + 1)]  # windows not touching it
    assert inside.mean() - outside.mean() >= 1.0, (inside, outside)  # rating points (1-10 scale)

    # the contribution to the target dissonance weighs most on, signed by that weight, peaks there too
    weights = head_slopes(model.head, tl.concepts)  # (targets, concepts); the weights for a linear head
    j = list(model.config.concept_names).index("dissonance")
    t = int(np.argmax(np.abs(weights[:, j])))
    target = model.config.target_names[t]
    contribution = tl.contributions[:, t, j] * np.sign(weights[t, j])
    assert SPAN[0] <= centres[np.argmax(contribution)] <= SPAN[1], target


def test_dissonance_attribution_map_peaks_in_the_injected_span(clip, model):
    maps = concept_maps(model, clip, sample_rate=SR)
    per_frame, times = maps.over_time("dissonance"), maps.frame_times
    per_second = np.array([per_frame[(times >= s) & (times < s + 1)].sum() for s in range(10)])
    two_second = per_second[:-1] + per_second[1:]  # spans [s, s + 2)
    assert int(np.argmax(two_second)) == int(SPAN[0]), np.round(two_second, 3)
    assert per_second[4:6].sum() > 0
