"""The SHAP benchmark runs with one command, writes its tables and plot, and resumes per clip."""

import json

import pytest

from script_loader import load_script
from test_recipes import write_layout

from midlevel.zoo import REGISTRY, get_entry


def benchmark_module():
    return load_script("benchmarks/intrinsic_vs_shap.py")


def test_quick_run_writes_results_and_a_killed_run_resumes_from_its_clip_records(tmp_path):
    write_layout(tmp_path / "data")
    bench = benchmark_module()
    out = tmp_path / "results"
    args = ["--corpus", str(tmp_path / "data"), "--models", "emotion-structural-linear-mid10-rand1k-v7,emotion-equivariant-a2e-rand3k", "--n", "3",
            "--n-stability", "1", "--n-timing", "1", "--max-evals", "70", "--gradient-samples", "2", "--gradient-sweep", "2,8",
            "--segments", "4x2", "--out", str(out)]
    # two shards side by side compute the clip records; the whole run reads them back
    for shard in ("0/2", "1/2"):
        assert bench.main([*args, "--shard", shard]) == 0
    assert not (out / "intrinsic_vs_shap.json").exists()
    sharded = sorted((out / ".partial" / "emotion-equivariant-a2e-rand3k").glob("*/0*.json"))
    assert [p.name[:4] for p in sharded] == ["0000", "0001", "0002"]
    written = {p: p.stat().st_mtime_ns for p in sharded}
    assert bench.main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in sharded} == written
    for suffix in ("json", "md", "png"):
        assert (out / f"intrinsic_vs_shap.{suffix}").stat().st_size > 0
    first = json.loads((out / "intrinsic_vs_shap.json").read_text())
    assert first["n_test"] == 3 and set(first["black_boxes"]) == {"emotion-equivariant-a2e-rand3k"}
    assert first["weights_sha256"]["emotion-equivariant-a2e-rand3k"] == get_entry("emotion-equivariant-a2e-rand3k").sha256
    cost = first["cost"]
    assert {"permutation", "partition", "gradient", "mlp_shap"} <= set(cost["ratios"]["emotion-structural-linear-mid10-rand1k-v7"])
    # the cheapest variant quoted against the 100x bar is one whose values add up to the output;
    # two expected-gradient samples do not
    errors = first["black_boxes"]["emotion-equivariant-a2e-rand3k"]["additivity_error"]
    assert errors["gradient"] > cost["additivity_tolerance"] >= max(errors["permutation"], errors["partition"])
    assert cost["cheapest_black_box_shap"]["emotion-structural-linear-mid10-rand1k-v7"]["method"] in ("permutation", "partition")
    sweep = cost["gradient_budget"]["emotion-equivariant-a2e-rand3k"]["samples"]
    assert list(sweep) == ["2", "8"]
    assert all(v["wall"] > 0 and v["additivity_error_max"] >= v["additivity_error_median"] > 0 for v in sweep.values())

    records = sorted((out / ".partial" / "emotion-equivariant-a2e-rand3k").glob("*/0*.json"))
    assert len(records) == 3
    # a run killed after its first clip: the others are recomputed, the first one is read back
    stamps = {p: p.stat().st_mtime_ns for p in records}
    for p in records[1:]:
        p.unlink()
    assert bench.main(args) == 0
    again = json.loads((out / "intrinsic_vs_shap.json").read_text())
    assert records[0].stat().st_mtime_ns == stamps[records[0]]
    assert all(p.is_file() for p in records)
    assert again["black_boxes"] == first["black_boxes"] and again["models"] == first["models"]

    # other settings never reuse those records
    assert bench.main([*args[:-2], "--max-evals", "80", "--out", str(out)]) == 0
    assert len(list((out / ".partial" / "emotion-equivariant-a2e-rand3k").iterdir())) == 2


def test_merge_measures_only_the_new_models_and_refuses_other_clips_or_settings(tmp_path):
    """--merge keeps an earlier run's models (same clips, settings and weights) beside the new ones."""
    write_layout(tmp_path / "data")
    bench = benchmark_module()
    out = tmp_path / "results"
    common = ["--corpus", str(tmp_path / "data"), "--n-stability", "1", "--n-timing", "1", "--max-evals", "70",
              "--gradient-samples", "2", "--gradient-sweep", "2", "--segments", "4x2", "--out", str(out)]
    assert bench.main([*common, "--n", "3", "--models", "emotion-structural-linear-mid10-rand1k-v7,emotion-equivariant-a2e-rand3k"]) == 0
    first = json.loads((out / "intrinsic_vs_shap.json").read_text())
    assert first["clips"] and len(first["runs"]) == 1

    assert bench.main([*common, "--n", "3", "--models", "emotion-compact-gam-mid7-ctrl3k-seq", "--merge"]) == 0
    merged = json.loads((out / "intrinsic_vs_shap.json").read_text())
    assert set(merged["models"]) == {"emotion-structural-linear-mid10-rand1k-v7", "emotion-compact-gam-mid7-ctrl3k-seq"} and set(merged["black_boxes"]) == {"emotion-equivariant-a2e-rand3k"}
    assert merged["models"]["emotion-structural-linear-mid10-rand1k-v7"] == first["models"]["emotion-structural-linear-mid10-rand1k-v7"]
    assert merged["black_boxes"] == first["black_boxes"]
    assert merged["cost"]["ratios"]["emotion-structural-linear-mid10-rand1k-v7"] == first["cost"]["ratios"]["emotion-structural-linear-mid10-rand1k-v7"]
    assert merged["weights_sha256"]["emotion-compact-gam-mid7-ctrl3k-seq"] == get_entry("emotion-compact-gam-mid7-ctrl3k-seq").sha256
    assert [r["models"] for r in merged["runs"]] == [["emotion-structural-linear-mid10-rand1k-v7", "emotion-equivariant-a2e-rand3k"], ["emotion-compact-gam-mid7-ctrl3k-seq"]]
    assert "## Runs" in (out / "intrinsic_vs_shap.md").read_text()

    for extra, why in ((["--n", "2", "--models", "emotion-compact-gam-mid7-ctrl3k-seq"], "other clips"),
                       (["--n", "3", "--models", "emotion-compact-gam-mid7-ctrl3k-seq", "--max-evals", "80"], "other settings.*max_evals"),
                       (["--n", "3", "--models", "emotion-compact-gam-mid7-ctrl3k-seq,emotion-equivariant-a2e-rand3k"], "emotion-structural-linear-mid10-rand1k-v7.*measures again")):
        with pytest.raises(SystemExit, match=why):
            bench.main([*common, *extra, "--merge"])
    assert json.loads((out / "intrinsic_vs_shap.json").read_text()) == merged  # nothing written by a refused run

    # a superseded entry cannot be run again (its weights left the wheel): kept when the zoo's record of its
    # sha256 names the weights the earlier run measured, refused otherwise
    old, src = "emotion-measures-linear-mid10-ctrl12k", "emotion-compact-gam-mid7-ctrl3k-seq"
    assert not REGISTRY[old].shipped
    earlier = json.loads((out / "intrinsic_vs_shap.json").read_text())
    earlier["models"][old] = {**earlier["models"][src], "counterpart": None}
    earlier["weights_sha256"][old] = REGISTRY[old].sha256
    for key in ("ratios", "seconds"):
        earlier["cost"][key][old] = earlier["cost"][key][src]
    earlier["runs"].append({"models": [old], "machine": "another machine", "finished": "2026-12-04 17:29 UTC"})
    (out / "intrinsic_vs_shap.json").write_text(json.dumps(earlier))
    assert bench.main([*common, "--n", "3", "--models", src, "--merge"]) == 0
    kept = json.loads((out / "intrinsic_vs_shap.json").read_text())
    assert kept["models"][old] == earlier["models"][old] and kept["weights_sha256"][old] == REGISTRY[old].sha256
    assert [r["models"] for r in kept["runs"]][-2:] == [[old], [src]]
    earlier["weights_sha256"][old] = "0" * 64
    (out / "intrinsic_vs_shap.json").write_text(json.dumps(earlier))
    with pytest.raises(SystemExit, match="other weights than the zoo records"):
        bench.main([*common, "--n", "3", "--models", src, "--merge"])

    # a superseded model whose cost ratios were timed against a black box this run times again cannot be measured
    # again (its weights left the wheel): its row leaves the file, said in the tables, instead of the run refusing
    earlier["weights_sha256"][old] = REGISTRY[old].sha256
    earlier["models"][old]["counterpart"] = "emotion-equivariant-a2e-rand3k"
    (out / "intrinsic_vs_shap.json").write_text(json.dumps(earlier))
    assert bench.main([*common, "--n", "3", "--models", "emotion-structural-linear-mid10-rand1k-v7,emotion-equivariant-a2e-rand3k", "--merge"]) == 0
    after = json.loads((out / "intrinsic_vs_shap.json").read_text())
    assert old not in after["models"] and old not in after["cost"]["ratios"] and old not in after["weights_sha256"]
    assert after["dropped"] == {old: {"counterpart": "emotion-equivariant-a2e-rand3k"}}
    assert after["models"][src] == earlier["models"][src]
    assert f"`{old}` (superseded; its cost ratios were timed against `emotion-equivariant-a2e-rand3k`" in (out / "intrinsic_vs_shap.md").read_text()
