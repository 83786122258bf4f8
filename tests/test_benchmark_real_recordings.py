"""The real-recordings benchmark (issue 30) runs with one command on installed recorded music; its numbers
can be recomputed independently, and --merge adds a model's row beside the earlier ones."""

import json

import numpy as np
import pytest
import soundfile as sf

from script_loader import load_script
from test_recipes import write_layout

from midlevel import load
from midlevel.audio import load_audio
from midlevel.zoo import get_entry, list_models

pytest.importorskip("essentia", reason="peer measurements need essentia (pip install essentia)")
pytest.importorskip("pyloudnorm", reason="peer measurements need pyloudnorm (pip install pyloudnorm)")
pytest.importorskip("pedalboard", reason="the reverb perturbation needs pedalboard (pip install pedalboard)")

SR = 22050


def benchmark_module():
    return load_script("benchmarks/real_recordings.py")


def smallest(explainable: bool) -> str:
    entries = [get_entry(n) for n in list_models() if get_entry(n).task == "music-emotion"]  # it measures music
    return min((e for e in entries if e.explainable == explainable), key=lambda e: e.size_bytes).name


def test_excerpts_are_deterministic_distinct_tracks_past_the_intro_and_not_silent(tmp_path):
    bench = benchmark_module()
    rng = np.random.default_rng(0)
    seconds = {"a": 40, "b": 30, "c": 25, "short": 12}
    recs = []
    for name, length in seconds.items():
        x = 0.1 * rng.standard_normal(length * SR).astype(np.float32)
        if name == "c":  # near-silent (-80 dBFS) but for its last 2 s, which no excerpt can reach (starts <= 11 s)
            x[: 23 * SR] *= 1e-3
        sf.write(tmp_path / f"{name}.flac", x, SR)
        recs.append(bench.Recording(str(tmp_path / f"{name}.flac"), "test"))
    few = bench.pick_excerpts(recs, 2, seed=3)
    assert len(few) == 2 and len({e.file for e in few}) == 2
    assert [e.record() for e in bench.pick_excerpts(recs, 2, seed=3)] == [e.record() for e in few]
    many = bench.pick_excerpts(recs, 7, seed=3)  # more excerpts than usable tracks: several per track
    assert {e.file.rsplit("/", 1)[1] for e in many} == {"a.flac", "b.flac"}  # c is near-silent, "short" too short
    assert len(many) >= 4 and len({e.start_sample for e in many}) == len(many)
    for e in many:
        n = seconds[e.file.rsplit("/", 1)[1].split(".")[0]] * SR
        assert e.start_s >= bench.SKIP_S and e.start_sample + len(e.samples) <= n
        assert len(e.samples) == int(bench.CONTEXT_S * SR) and not bench.is_silent(e.audio, bench.SILENCE_DB)
    variants = bench.make_variants(many[0], explainable=True)
    assert set(variants) == set(bench.variant_keys(True))
    assert all(len(v) == int(bench.SECONDS * SR) for v in variants.values())
    clash = variants["clash"]
    assert bench.rms(clash) == pytest.approx(bench.rms(variants["original"]), rel=1e-3)


def test_quick_run_writes_every_measure_the_gain_measure_recomputes_and_merge_adds_a_black_box(tmp_path):
    bench = benchmark_module()
    out, cache = tmp_path / "results", tmp_path / "results" / "cache"
    if not bench.list_recordings(extract_dir=cache):
        pytest.skip("no recorded music installed; " + bench.INSTALL_HINT)
    write_layout(tmp_path / "data")  # a corpus whose 5 test clips rate the peers (mechanics only)
    name, black_box = smallest(True), smallest(False)
    common = ["--n", "3", "--controlled", str(tmp_path / "data"), "--out", str(out)]
    assert bench.main([*common, "--models", name]) == 0
    summary = json.loads((out / "real_recordings.json").read_text())
    assert (out / "real_recordings.md").stat().st_size > 0
    assert len(summary["excerpts"]) == 3 and len({e["file"] for e in summary["excerpts"]}) == 3
    assert {"date", "torch", "torch_threads", "cpu"} <= set(summary["environment"])
    assert summary["settings"]["mp3_kbps"] == pytest.approx(32, abs=1.0)
    row = summary["models"][name]
    assert row["weights_sha256"] == get_entry(name).sha256 and row["seconds"]["evaluations"] == 3 * len(bench.variant_keys(True))
    concepts = row["concepts"]
    for key in ("gain", "codec", "reverb"):
        assert set(row[key]["per_concept"]) == set(concepts) and row[key]["mean"] >= 0
    mode = [c for c in bench.MODE_CONCEPTS if c in concepts]
    assert set(row["transpose"]["shift"]["per_concept"]) == set(mode) == set(row["transpose"]["round_trip"]["per_concept"])
    assert ("register" in concepts) == (row["transpose"]["register_up"] is not None)
    assert ("tempo" in concepts) == (row["stretch"] is not None)
    assert 0 <= row["clash"]["dissonance_up"] <= 1
    assert set(row["agreement"]) == {c for c in bench.PEERS if c in concepts}
    assert all(a["peer"] and "r_real" in a and "r_peer_vs_truth_controlled" in a for a in row["agreement"].values())
    assert set(summary["peers_on_controlled"]["per_concept"]) == {c for c in bench.PEERS if c in bench.MIDLEVEL_FEATURES}
    assert set(summary["excerpts"][0]["peers"]) == {field for _, field in bench.PEERS.values()}

    # the gain measure, recomputed from the excerpts' files and starts alone
    model = load(name)
    before, after = [], []
    for e in summary["excerpts"]:
        path = bench.Recording(e["file"], e["package"], cache).path()
        x = load_audio(path, SR).samples[e["start_sample"]: e["start_sample"] + int(10 * SR)]
        # the network's values before clipping to the scale, as the benchmark measures them
        before.append(model.explain(x, sample_rate=SR).raw_concepts)
        after.append(model.explain(x * np.float32(10 ** (-12 / 20)), sample_rate=SR).raw_concepts)
    before, after = np.array(before), np.array(after)
    np.testing.assert_allclose(before, row["original_concepts"], rtol=1e-5, atol=1e-5)
    expected = np.mean(np.abs(after - before), axis=0) / np.std(before, axis=0)
    np.testing.assert_allclose([row["gain"]["per_concept"][c] for c in concepts], expected, rtol=1e-4)
    assert row["gain"]["mean"] == pytest.approx(expected.mean(), rel=1e-4)

    card = bench.card_table(summary, name)
    assert card.count("\n") >= 10 and f"`{name}`" in card and f"{row['gain']['mean']:.2f}" in card

    # --merge: the black box gets a row of its own (no concepts) and the first row stays as it was
    assert bench.main([*common, "--models", black_box, "--merge"]) == 0
    merged = json.loads((out / "real_recordings.json").read_text())
    assert list(merged["models"]) == [name, black_box] and merged["models"][name] == row
    bb = merged["models"][black_box]
    assert bb["black_box"] and bb["gain"] is None and bb["agreement"] is None and bb["targets"]["gain"]["mean"] >= 0
    assert "no concepts" in bench.card_table(merged, black_box)
    assert "black box: no concepts" in (out / "real_recordings.md").read_text()
    with pytest.raises(SystemExit, match="other settings"):
        bench.main([*common[:1], "2", *common[2:], "--models", black_box, "--merge"])
