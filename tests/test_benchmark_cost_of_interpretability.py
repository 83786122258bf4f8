"""The cost-of-interpretability benchmark: black box vs two-stage models on unseen pieces, with ceilings."""

import argparse
import json

import numpy as np
import pytest

from script_loader import load_script
from test_recipes import write_layout

import midlevel
from midlevel.concepts import MIDLEVEL_FEATURES
from midlevel.training.data import load_splits
from midlevel.training.metrics import pearson_per_column
from midlevel.zoo import get_entry


def benchmark_module():
    return load_script("benchmarks/cost_of_interpretability.py")


def test_costs_intervals_and_the_true_rating_ceiling(tmp_path):
    write_layout(tmp_path / "data")
    write_layout(tmp_path / "held", seed=1)
    bench = benchmark_module()
    out = tmp_path / "results"
    assert bench.main(["--black-box", "emotion-equivariant-a2e-rand3k", "--model", "joint=emotion-compact-gam-mid7-ctrl3k-seq", "--model", "seq=emotion-compact-gam-mid7-ctrl3k-seq",
                       "--train-corpus", str(tmp_path / "data"), "--heldout", str(tmp_path / "held"),
                       "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--bootstrap", "200"]) == 0
    summary = json.loads((out / "cost_of_interpretability.json").read_text())
    box = summary["black_box"]
    assert box["weights_sha256"] == get_entry("emotion-equivariant-a2e-rand3k").sha256 and summary["heldout"]["clips"] == 5
    for label in ("joint", "seq"):
        e = summary["models"][label]
        assert e["cost"] == pytest.approx(box["r"]["mean"] - e["r"]["mean"])
        low, high = e["cost_ci95_by_piece"]
        assert low <= high and e["concepts"] == list(MIDLEVEL_FEATURES)
    # the ceiling is ordinary least squares on the true ratings (numpy, not the benchmark's solver)
    train, test = load_splits(tmp_path / "data")["train"], load_splits(tmp_path / "held")["test"]
    design = np.column_stack([np.ones(len(train)), train.concepts])
    coef, *_ = np.linalg.lstsq(design, train.targets, rcond=None)
    expected = pearson_per_column(test.targets, np.column_stack([np.ones(len(test)), test.concepts]) @ coef)
    (ceiling,) = summary["ceilings"].values()
    np.testing.assert_allclose([ceiling["r"][n] for n in summary["targets"]], expected, atol=1e-9)
    text = (out / "cost_of_interpretability.md").read_text()
    assert box["trained_on"] == midlevel.load("emotion-equivariant-a2e-rand3k").config.metadata["corpus"]
    assert f"| A2E `emotion-equivariant-a2e-rand3k` (trained on `{box['trained_on']}`) |" in text
    assert f"(7 concepts; trained on `{summary['models']['joint']['trained_on']}`)" in text and "Ceilings" in text


def test_model_spec_needs_a_label():
    bench = benchmark_module()
    assert bench.parse_model("joint-10=runs/x/models/joint-linear") == ("joint-10", "runs/x/models/joint-linear")
    with pytest.raises(argparse.ArgumentTypeError, match="LABEL=NAME_OR_DIR"):
        bench.parse_model("emotion-compact-gam-mid7-ctrl3k-seq")
