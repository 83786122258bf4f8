"""The controlled corpus (midlevel.datasets.controlled): layout, determinism, resume, splits,
paired factor checks on rendered audio, rating spread/independence, and ground-truth recovery."""

from __future__ import annotations

import functools
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from midlevel.concepts import EMOTIONS, MIDLEVEL_FEATURES, OUTSIDE_CONCEPTS
from midlevel.datasets.controlled import (
    NOISE_SD,
    OUTSIDE_RANGES,
    CorpusBuildError,
    RenderDependencyError,
    build_corpus,
    catalogue,
    compute_ratings,
    fit_generating_weights,
    ground_truth,
    load_piece,
    neutral_factors,
    outside_matrix,
    outside_ratings,
    realize,
    render_clip,
    sample_ratings,
    split_of,
    standardise_outside,
    standardise_ratings,
    weight_matrix,
)
from midlevel.datasets.controlled import render as render_mod
from midlevel.datasets.controlled.emotions import OUTSIDE_STANDARDISATION
from midlevel.datasets.controlled.theory import key_correlations

try:
    render_mod.check_dependencies()
    HAVE_FLUIDSYNTH = True
except RenderDependencyError:
    HAVE_FLUIDSYNTH = False
needs_fluidsynth = pytest.mark.skipif(not HAVE_FLUIDSYNTH, reason="fluidsynth / FluidR3_GM.sf2 not installed")

SR = 22050
SEED = 3  # its first pieces are quick to parse (chorales, Palestrina)
N_CLIPS = 12
SECONDS = 4.0
TABLES = (
    "metadata_annotations/annotations.csv",
    "metadata_annotations/metadata.csv",
    "mean_ratings_set1.csv",
    "factors.csv",
    "ground_truth.json",
    "corpus.json",
)

# a spread of cheap-to-parse pieces from every style group, for label statistics without audio
SAMPLE_PIECES = [
    "bach/bwv66.6.mxl", "bach/bwv153.1.mxl", "bach/bwv269.mxl", "bach/bwv244.44.mxl",
    "essenFolksong/han1.abc#390", "essenFolksong/zuccal0.abc#507", "ryansMammoth/LarryOGaffJig.abc",
    "oneills1850/0001-0050.abc#20", "palestrina/Agnus_II_54.krn", "palestrina/Gloria_16_i.krn",
    "haydn/opus1no1/movement4.mxl", "mozart/k80/movement3.mxl",
    "schoenberg/opus19/movement2.mxl", "schumann_robert/opus48no2.mxl", "verdi/laDonnaEMobile.mxl",
    "handel/rinaldo/Lascia_chio_pianga.mxl", "joplin/maple_leaf_rag.mxl",
    "trecento/PMFC_12_19-Sanctus Barbitonsoris.xml", "webern/webern_dormi_jesu_op_16_no_2.mxl",
    "liliuokalani/aloha_oe.mxl", "chopin/mazurka06-2.krn",
]  # fmt: skip


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("music21_cache")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, cache):
    if not HAVE_FLUIDSYNTH:
        pytest.skip("fluidsynth / FluidR3_GM.sf2 not installed")
    out = tmp_path_factory.mktemp("corpus_a")
    summary = build_corpus(out, N_CLIPS, seconds=SECONDS, seed=SEED, workers=1, cache_dir=cache, progress=False)
    return out, summary


@pytest.fixture(scope="module")
def sample(cache):
    return sample_ratings(700, seed=11, seconds=10.0, clips_per_piece=2, cache_dir=cache, pieces=SAMPLE_PIECES)


# ----------------------------------------------------------------------------- layout


def test_layout_is_read_by_the_real_loaders(corpus):
    from midlevel.datasets import load_midlevel, load_soundtracks

    out, summary = corpus
    assert summary["built"] == N_CLIPS and summary["skipped"] == 0
    ann = (out / "metadata_annotations/annotations.csv").read_text().splitlines()
    assert ann[0] == "song_id," + ",".join(MIDLEVEL_FEATURES)
    assert len(ann) == N_CLIPS + 1
    meta_head = (out / "metadata_annotations/metadata.csv").read_text().splitlines()[0]
    assert meta_head.startswith("song id;Artist;Source;ID at file source;")
    assert (out / "mean_ratings_set1.csv").read_text().splitlines()[0] == "number," + ",".join(EMOTIONS)

    ml = load_midlevel(out)
    assert list(ml.ratings.columns) == list(MIDLEVEL_FEATURES)
    assert list(ml.ratings.index) == [str(i) for i in range(1, N_CLIPS + 1)]
    assert ml.audio_ext == "flac" and ml.missing_audio() == []
    assert ((ml.ratings >= 1) & (ml.ratings <= 10)).all().all()
    assert {"artist", "source", "source_id", "piece_id", "split"} <= set(ml.metadata.columns)

    st = load_soundtracks(out, audio_dir="audio", audio_ext="flac", id_format="{}")
    assert list(st.ratings.index) == list(range(1, N_CLIPS + 1))
    assert st.missing_audio() == []
    assert ((st.ratings[list(EMOTIONS)] >= 1) & (st.ratings[list(EMOTIONS)] <= 9)).all().all()

    import soundfile as sf

    info = sf.info(str(ml.audio_path("1")))
    assert info.samplerate == SR and info.channels == 1 and info.frames == int(SECONDS * SR)

    gt = json.loads((out / "ground_truth.json").read_text())
    assert np.allclose([[gt["W"][f][e] for e in EMOTIONS] for f in MIDLEVEL_FEATURES], weight_matrix())
    assert gt["noise_sd"] == NOISE_SD and set(gt["outside_terms"]) == {"loudness", "tempo", "register"}
    factors = pd.read_csv(out / "factors.csv")
    assert len(factors) == N_CLIPS and {"tempo_bpm", "articulation_ratio", "jitter", "velocity", "transpose"} <= set(factors)


def test_bad_row_in_corpus_file_is_named(corpus, tmp_path):
    from midlevel.datasets import DatasetError, load_midlevel

    out, _ = corpus
    bad = tmp_path / "bad"
    shutil.copytree(out / "metadata_annotations", bad / "metadata_annotations")
    path = bad / "metadata_annotations/annotations.csv"
    lines = path.read_text().splitlines()
    lines[3] = lines[3].split(",", 1)[0] + ",abc," + lines[3].split(",", 2)[2]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError) as err:
        load_midlevel(bad)
    assert "annotations.csv" in str(err.value) and "line 4" in str(err.value)


# ----------------------------------------------------------------------------- determinism, resume


def test_same_seed_is_byte_identical_whatever_the_workers(corpus, tmp_path, cache):
    out, _ = corpus
    other = tmp_path / "b"
    build_corpus(other, N_CLIPS, seconds=SECONDS, seed=SEED, workers=2, cache_dir=cache, progress=False)
    for rel in TABLES:
        assert (out / rel).read_bytes() == (other / rel).read_bytes(), rel


def test_different_seed_gives_a_different_corpus(corpus, tmp_path, cache):
    out, _ = corpus
    other = tmp_path / "c"
    build_corpus(other, 6, seconds=SECONDS, seed=SEED - 1, workers=1, cache_dir=cache, progress=False)
    a = pd.read_csv(out / "metadata_annotations/annotations.csv").head(6)
    b = pd.read_csv(other / "metadata_annotations/annotations.csv")
    assert not np.allclose(a.to_numpy(), b.to_numpy())


def test_resume_rebuilds_only_missing_clips_identically(corpus, tmp_path, cache):
    out, _ = corpus
    copy = tmp_path / "resume"
    shutil.copytree(out, copy)
    (copy / "audio" / "5.flac").unlink()
    (copy / "records" / "9.json").unlink()
    (copy / "metadata_annotations/annotations.csv").unlink()
    summary = build_corpus(copy, N_CLIPS, seconds=SECONDS, seed=SEED, cache_dir=cache, progress=False)
    assert summary["built"] == 2 and summary["skipped"] == N_CLIPS - 2
    for rel in TABLES:
        assert (out / rel).read_bytes() == (copy / rel).read_bytes(), rel
    # a folder built with other settings is refused rather than mixed
    with pytest.raises(CorpusBuildError, match="other settings"):
        build_corpus(copy, N_CLIPS, seconds=SECONDS + 1, seed=SEED, cache_dir=cache, progress=False)


def test_splits_never_share_a_piece(corpus, sample):
    out, _ = corpus
    meta = pd.read_csv(out / "metadata_annotations/metadata.csv", sep=";")
    assert (meta.groupby("piece_id")["split"].nunique() == 1).all()
    assert (sample.groupby("piece_id")["split"].nunique() == 1).all()
    splits = pd.Series([split_of(r.piece_id) for r in catalogue()])
    share = splits.value_counts(normalize=True)
    assert abs(share["train"] - 0.8) < 0.02 and abs(share["val"] - 0.1) < 0.02 and abs(share["test"] - 0.1) < 0.02


def test_missing_renderer_gives_one_clear_message(tmp_path, monkeypatch):
    with pytest.raises(RenderDependencyError, match="apt-get install fluidsynth fluid-soundfont-gm"):
        build_corpus(tmp_path / "x", 2, soundfont=str(tmp_path / "missing.sf2"), progress=False)
    monkeypatch.setattr(render_mod.shutil, "which", lambda name: None)
    with pytest.raises(RenderDependencyError, match="apt-get install fluidsynth fluid-soundfont-gm"):
        build_corpus(tmp_path / "y", 2, progress=False)


# ----------------------------------------------------------------------------- paired factor checks

PAIR_PIECE = "bach/bwv153.1.mxl"  # four-voice chorale; its first bar is a one-beat pickup, so beats fall on t = k * 60/bpm
PAIR_SECONDS = 5.0


@functools.lru_cache(maxsize=None)
def _render(cache_dir: str, **overrides):
    piece = load_piece(PAIR_PIECE, cache_dir)
    f = neutral_factors(piece, 0.0, **overrides)
    clip = realize(piece, f, PAIR_SECONDS, key=(7, 7))
    ratings, _, meas = compute_ratings(clip, f)
    audio, info = render_clip(clip)
    return ratings, meas, audio, info


def _pair(cache, base: dict, changed: dict):
    return _render(str(cache), **base), _render(str(cache), **{**base, **changed})


def gap_fraction(y):
    """Share of frames more than 20 dB below the loud frames: silences between detached notes."""
    import librosa

    db = 20 * np.log10(librosa.feature.rms(y=y, frame_length=1024, hop_length=256)[0] + 1e-9)
    return float(np.mean(db < np.percentile(db, 95) - 20))


def onset_grid_deviation(y, bpm, per_beat=2):
    """Mean distance (s) of detected onsets from the nearest eighth-note grid line."""
    import librosa

    on = librosa.onset.onset_detect(y=y, sr=SR, units="time", hop_length=256)
    g = 60.0 / bpm / per_beat
    r = ((on / g + 0.5) % 1.0 - 0.5) * g
    return float(np.mean(np.abs(r - np.median(r))))


def _chroma(y):
    import librosa

    return librosa.feature.chroma_stft(y=y, sr=SR, n_fft=4096, hop_length=1024)


def chroma_minor_vs_major(y):
    """Best minor-key minus best major-key correlation of the audio's chroma profile."""
    c = key_correlations(_chroma(y).sum(axis=1))
    return float(c[12:].max() - c[:12].max())


def chroma_key_consistency(y):
    """How well the clip's chroma key fits its worst third (low after a modulation or with blur)."""
    c = _chroma(y)
    k = int(np.argmax(key_correlations(c.sum(axis=1))))
    w = c.shape[1] // 3
    return float(min(key_correlations(c[:, s : s + w].sum(axis=1))[k] for s in np.linspace(0, c.shape[1] - w, 5).astype(int)))


def spectral_roughness(y):
    """Plomp-Levelt / Sethares roughness of the strongest spectral peaks, averaged over frames."""
    import librosa

    mag = np.abs(librosa.stft(y, n_fft=4096, hop_length=1024))
    freqs = librosa.fft_frequencies(sr=SR, n_fft=4096)
    out = []
    for fr in mag.T:
        if fr.max() < 1e-4:
            continue
        pk = np.flatnonzero((fr[1:-1] > fr[:-2]) & (fr[1:-1] >= fr[2:]) & (fr[1:-1] > 0.05 * fr.max())) + 1
        pk = pk[np.argsort(fr[pk])[::-1][:30]]
        f, a = freqs[pk], fr[pk] / fr[pk].max()
        f1, f2 = np.meshgrid(f, f)
        a1, a2 = np.meshgrid(a, a)
        s = 0.24 / (0.0207 * np.minimum(f1, f2) + 18.96)
        d = np.abs(f2 - f1)
        out.append(float((a1 * a2 * (np.exp(-3.5 * s * d) - np.exp(-5.75 * s * d))).sum() / 2 / (a**2).sum()))
    return float(np.mean(out))


def offbeat_low_onsets(y, bpm):
    """Share of low-band onset strength away from the beats (kick/snare syncopation)."""
    import librosa

    mel = librosa.feature.melspectrogram(y=y, sr=SR, hop_length=256, n_mels=64, fmax=8000)
    env = librosa.onset.onset_strength(S=librosa.power_to_db(mel[:6]), sr=SR, hop_length=256)
    phase = (librosa.frames_to_time(np.arange(len(env)), sr=SR, hop_length=256) / (60.0 / bpm)) % 1.0
    near = (phase < 0.12) | (phase > 0.88)
    return float(env[~near].sum() / env.sum())


def onset_rate(y):
    import librosa

    return len(librosa.onset.onset_detect(y=y, sr=SR, hop_length=256)) / (len(y) / SR)


def melodic_leap(y):
    """Mean pitch jump (semitones) between successive detected notes of a solo line (YIN)."""
    import librosa

    on = librosa.onset.onset_detect(y=y, sr=SR, hop_length=256, units="samples", backtrack=True)
    midi = librosa.hz_to_midi(librosa.yin(y, fmin=100, fmax=2100, sr=SR, frame_length=2048, hop_length=256))
    bounds = list(on // 256) + [len(midi)]
    med = [np.median(midi[a + (b - a) // 4 : b - (b - a) // 4 + 1]) for a, b in zip(bounds[:-1], bounds[1:]) if b - a >= 4]
    return float(np.mean(np.abs(np.diff(med))))


def rms_db(y):
    return float(20 * np.log10(np.sqrt(np.mean(y.astype(float) ** 2)) + 1e-12))


BPM = 90.0
PAIRS = [
    # name, base factors, the one change, feature, rating direction, audio measure, audio direction
    ("staccato", {"ensemble": "organ", "articulation_ratio": 1.0}, {"articulation_ratio": 0.25}, "articulation", +1, gap_fraction, +1),
    ("staccato_piano", {"ensemble": "piano", "articulation_ratio": 1.0}, {"articulation_ratio": 0.25}, "articulation", +1, gap_fraction, +1),
    ("jitter", {"ensemble": "piano", "articulation_ratio": 0.5}, {"jitter": 0.15}, "rhythm_stability", -1,
     lambda y: onset_grid_deviation(y, BPM), +1),
    ("minor", {"mode": "major"}, {"mode": "minor"}, "minorness", +1, chroma_minor_vs_major, +1),
    ("tonal_blur", {}, {"wrong_notes": 0.3, "modulation_shifts": (6,)}, "tonal_stability", -1, chroma_key_consistency, -1),
    ("clusters", {}, {"cluster_rate": 1.0}, "dissonance", +1, spectral_roughness, +1),
    ("detuned_double", {}, {"detune_cents": 40.0}, "dissonance", +1, spectral_roughness, +1),
    ("percussion_layer", {"ensemble": "piano", "articulation_ratio": 0.6},
     {"percussion": True, "perc_syncopation": 1.0, "perc_subdivision": 4}, "rhythm_complexity", +1, onset_rate, +1),
    ("syncopation", {"ensemble": "piano", "articulation_ratio": 0.6, "percussion": True, "perc_subdivision": 2},
     {"perc_syncopation": 1.0}, "rhythm_complexity", +1, lambda y: offbeat_low_onsets(y, BPM), +1),
    ("octave_leaps", {"texture": "melody", "ensemble": "winds"}, {"octave_displacement": 0.5}, "melodiousness", -1,
     melodic_leap, +1),
]  # fmt: skip


@needs_fluidsynth
@pytest.mark.parametrize("name,base,change,feature,r_dir,measure,a_dir", PAIRS, ids=[p[0] for p in PAIRS])
def test_one_factor_moves_its_rating_and_the_audio(cache, name, base, change, feature, r_dir, measure, a_dir):
    (ra, _, ya, _), (rb, _, yb, _) = _pair(cache, base, change)
    assert r_dir * (rb[feature] - ra[feature]) >= 1.0, (name, ra[feature], rb[feature])
    ma, mb = measure(ya), measure(yb)
    assert a_dir * (mb - ma) > 0, (name, ma, mb)
    # the other features barely move (a factor is not a second copy of another feature)
    others = [f for f in MIDLEVEL_FEATURES if f != feature]
    moved = [f for f in others if abs(rb[f] - ra[f]) > abs(rb[feature] - ra[feature])]
    assert not moved, (name, moved)


@needs_fluidsynth
def test_loudness_is_audible_and_not_clipped(cache):
    (_, _, ya, ia), (_, _, yb, ib) = _pair(cache, {"velocity": 40.0}, {"velocity": 115.0})
    assert rms_db(yb) - rms_db(ya) > 6.0
    assert ib["limiter_gain"] == 1.0 and ib["peak"] < 1.0


# ----------------------------------------------------------------------------- labels over many clips


def test_ratings_spread_and_are_not_duplicates(sample):
    r = sample[list(MIDLEVEL_FEATURES)]
    assert ((r >= 1) & (r <= 10)).all().all()
    sd = r.std()
    assert (sd >= 1.0).all(), sd.round(2).to_dict()
    corr = r.corr().to_numpy()
    off = np.abs(corr - np.eye(len(MIDLEVEL_FEATURES)))
    assert off.max() < 0.8, off.max()
    print(f"\nrating sd: {sd.round(2).to_dict()}\nmax |r| between features: {off.max():.2f}")


def test_emotions_recover_the_published_weights(sample):
    z = standardise_ratings(sample[list(MIDLEVEL_FEATURES)].to_numpy())
    x = standardise_outside(sample[["velocity", "tempo_bpm", "transpose"]].astype(float))
    e = sample[[f"emo_{k}" for k in EMOTIONS]].to_numpy()
    coef_all, r2_all = fit_generating_weights(np.column_stack([z, x]), e)
    coef_r, r2_r = fit_generating_weights(z, e)
    err_all = np.abs(coef_all[1:8] - weight_matrix()).max()
    err_r = np.abs(coef_r[1:8] - weight_matrix()).max()
    err_b = np.abs(coef_all[8:] - outside_matrix()).max()
    assert err_all < 0.06 and err_b < 0.06, (err_all, err_b)
    assert err_r < 0.12, err_r
    # the noise left over is the generating noise
    resid_sd = np.std(e - np.column_stack([np.ones(len(z)), z, x]) @ coef_all, axis=0)
    assert np.all(np.abs(resid_sd - NOISE_SD) < 0.06), resid_sd
    # outside-the-bottleneck terms: a ratings-only model is measurably worse
    assert r2_all.mean() - r2_r.mean() > 0.1
    print(f"\nR^2 ratings-only {r2_r.mean():.3f} vs all factors {r2_all.mean():.3f};"
          f" max |W error| {err_r:.3f} (ratings only) / {err_all:.3f} (all factors)")  # fmt: skip


def test_outside_concepts_carry_the_outside_terms_exactly(sample):
    """Loudness, tempo and register ratings are affine in the factors the emotions use, so a linear fit on
    all ten ratings recovers B at the documented per-rating-point scale and as much R^2 as the factors."""
    z = standardise_ratings(sample[list(MIDLEVEL_FEATURES)].to_numpy())
    factors = sample[["velocity", "tempo_bpm", "transpose"]].astype(float)
    outside = outside_ratings(factors)
    assert outside.shape == (len(sample), 3) and outside.min() >= 1 and outside.max() <= 10
    e = sample[[f"emo_{k}" for k in EMOTIONS]].to_numpy()
    coef_x, r2_x = fit_generating_weights(np.column_stack([z, standardise_outside(factors)]), e)
    coef_o, r2_o = fit_generating_weights(np.column_stack([z, outside]), e)
    np.testing.assert_allclose(r2_o, r2_x, atol=1e-9)
    per_point = np.array([(OUTSIDE_RANGES[o][1] - OUTSIDE_RANGES[o][0]) / (9 * OUTSIDE_STANDARDISATION[o]["sd"])
                          for o in OUTSIDE_CONCEPTS])
    np.testing.assert_allclose(coef_o[8:], coef_x[8:] * per_point[:, None], atol=1e-9)


def test_ground_truth_document_is_complete():
    gt = ground_truth()
    assert gt["features"] == list(MIDLEVEL_FEATURES) and gt["emotions"] == list(EMOTIONS)
    assert set(gt["rating_mean"]) == set(MIDLEVEL_FEATURES) and gt["noise_sd"] > 0
    for o in ("loudness", "tempo", "register"):
        assert set(gt["outside_terms"][o]["B"]) == set(EMOTIONS)


# ----------------------------------------------------------------------------- note rolls


def test_note_rolls_follow_the_rendered_audio(corpus, tmp_path):
    """A clip's roll marks the pitches whose fundamentals carry energy in its audio: the spectrogram
    band at each rolled pitch is louder while the roll says it sounds than while it does not, far more
    than for the same roll moved a tritone away (a roll from other notes, or misaligned in time, fails)."""
    from midlevel import ModelConfig, TwoStageModel
    from midlevel.datasets.controlled.rolls import ROLL_LOW, ROLL_PITCHES, corpus_rolls
    from midlevel.music_features import band_centres
    from midlevel.training.cache import cached_log_spectrograms
    from midlevel.training.data import load_splits

    out, _ = corpus
    cfg = ModelConfig(window_seconds=SECONDS)
    frontend = TwoStageModel(cfg).frontend
    clips = [c for split in load_splits(out).values() for c in zip(split.ids, split.paths)]
    ids, paths = [i for i, _ in clips], [p for _, p in clips]
    spec = cached_log_spectrograms(paths, frontend, cfg.window_samples, tmp_path, progress=False).float().numpy()
    rolls = corpus_rolls(out, ids, spec.shape[-1], cfg.frontend.hop_length, cache_dir=tmp_path, progress=False)
    assert rolls.shape == (len(ids), 2, ROLL_PITCHES, spec.shape[-1]) and rolls.dtype == np.uint8
    assert (rolls[:, 1] <= rolls[:, 0]).all() and (rolls[:, 1].sum(1) <= 1).all()  # one melody note, a sounding one
    assert rolls[:, 1].sum() > 0
    np.testing.assert_array_equal(  # cached: the second call reads the file
        corpus_rolls(out, ids, spec.shape[-1], cfg.frontend.hop_length, cache_dir=tmp_path, progress=False), rolls)
    many = ids * 12  # more than one chunk of clips, so the processes share them
    np.testing.assert_array_equal(  # processes in parallel: the same rolls, in the same order
        corpus_rolls(out, many, spec.shape[-1], cfg.frontend.hop_length, cache_dir=tmp_path / "two", progress=False,
                     workers=2),
        np.concatenate([rolls] * 12))
    freqs = 440.0 * 2 ** ((np.arange(ROLL_LOW, ROLL_LOW + ROLL_PITCHES) - 69) / 12)
    band = np.abs(np.log2(band_centres(cfg.frontend))[None, :] - np.log2(freqs)[:, None]).argmin(1)

    def contrast(shift):
        gaps = []
        for s, r in zip(spec, rolls[:, 0]):
            level = s[band] - s[band].mean(1, keepdims=True)  # (pitches, frames)
            moved = np.roll(r, shift, axis=0)
            on = moved.astype(bool)
            rows = on.any(1) & (~on).any(1)
            gaps += [level[p][on[p]].mean() - level[p][~on[p]].mean() for p in np.flatnonzero(rows)]
        return float(np.mean(gaps))

    assert contrast(0) > 0.1 and contrast(0) > 3 * contrast(6)


def test_note_rolls_need_a_controlled_corpus(tmp_path):
    from midlevel.datasets.controlled.rolls import RollError, corpus_rolls

    with pytest.raises(RollError, match="corpus.json.*controlled corpus"):
        corpus_rolls(tmp_path, ["1"], 10, 704, cache_dir=tmp_path)


def test_generalisation_benchmark_scores_the_shipped_transcriber_on_a_controlled_corpus(corpus, tmp_path):
    """On a controlled held-out corpus the benchmark also scores a transcribing model's notes against the
    clips' rolls: the shipped transcriber hears rendered notes far above chance, with F1 = 2PR/(P+R)."""
    from script_loader import load_script

    from midlevel.zoo import REGISTRY, list_models

    out, _ = corpus
    name = next(n for n in list_models()
                if REGISTRY[n].explainable and REGISTRY[n].backbone.startswith("compact_transcribe"))
    bench = load_script("studies/concept_generalisation.py")
    assert bench.main(["--model", f"t={name}@{out}", "--model", f"plain=emotion-compact-gam-mid7-ctrl3k-seq@{out}", "--heldout", str(out),
                       "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path), "--bootstrap", "50"]) == 0
    summary = json.loads((tmp_path / "concept_generalisation.json").read_text())
    assert "heldout_transcription" not in summary["models"]["plain"]  # it transcribes nothing
    scores = summary["models"]["t"]["heldout_transcription"]
    assert set(scores) == {"notes", "melody"}
    for v in scores.values():
        p, r = v["precision"], v["recall"]
        assert v["f1"] == pytest.approx(2 * p * r / (p + r))
    assert scores["notes"]["f1"] > 0.4
    assert "| t | notes |" in (tmp_path / "concept_generalisation.md").read_text()
