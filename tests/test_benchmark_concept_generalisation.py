"""The generalisation benchmark compares models on train, val, test and unseen pieces, grouped by piece."""

import json

import argparse
import numpy as np
import pytest
from script_loader import load_script
from test_recipes import write_layout

from midlevel import load
from midlevel.training.data import load_splits
from midlevel.training.metrics import pearson_per_column
from midlevel.zoo import get_entry


def benchmark_module():
    return load_script("studies/concept_generalisation.py")


def test_reports_every_split_per_style_and_a_piece_bootstrap(tmp_path):
    write_layout(tmp_path / "data")
    write_layout(tmp_path / "held", seed=1)
    meta = tmp_path / "held" / "metadata_annotations" / "metadata.csv"
    lines = meta.read_text().splitlines()
    # clips 1-2, 3-4, ... come from one piece; pieces alternate between two styles
    rows = [lines[0] + ";piece_id;style"] + [f"{line};piece{(i // 2)};{'folk' if (i // 2) % 2 else 'chorale'}"
                                              for i, line in enumerate(lines[1:])]
    meta.write_text("\n".join(rows) + "\n")
    bench = benchmark_module()
    out = tmp_path / "results"
    assert bench.main(["--model", f"seq=emotion-compact-gam-mid7-ctrl3k-seq@{tmp_path / 'data'}",
                       "--model", f"joint=emotion-compact-gam-mid7-ctrl3k-seq@{tmp_path / 'data'}",
                       "--heldout", str(tmp_path / "held"), "--cache-dir", str(tmp_path / "cache"),
                       "--out", str(out), "--bootstrap", "200"]) == 0
    summary = json.loads((out / "concept_generalisation.json").read_text())
    assert summary["heldout"] == {"corpus": str(tmp_path / "held"), "clips": 5, "pieces": 3}  # clips 26-30
    seq, joint = summary["models"]["seq"], summary["models"]["joint"]
    assert seq["weights_sha256"] == get_entry("emotion-compact-gam-mid7-ctrl3k-seq").sha256
    assert set(seq["r"]) == {"train", "val", "test", "heldout"} and seq["pieces"]["train"] == 20
    # the held-out r is the plain Pearson r of the model's concepts on those clips (the benchmark reads
    # float16-cached spectrograms, hence the tolerance on 5 clips)
    held = load_splits(tmp_path / "held")["test"]
    pred = np.stack([load("emotion-compact-gam-mid7-ctrl3k-seq").predict(p).raw_concepts for p in held.paths])
    np.testing.assert_allclose([joint["r"]["heldout"][n] for n in joint["concepts"]],
                               pearson_per_column(held.concepts, pred), atol=0.01)
    assert set(joint["heldout_by_style"]) == {"chorale", "folk"}
    assert sum(v["clips"] for v in joint["heldout_by_style"].values()) == 5
    low, high = joint["vs_first"]["ci95_by_piece"]
    assert "vs_first" not in seq and low <= high and joint["vs_first"]["concepts"] == seq["concepts"]
    assert joint["vs_first"]["mean_r_gain"] == pytest.approx(joint["r"]["heldout"]["mean"] - seq["r"]["heldout"]["mean"])
    text = (out / "concept_generalisation.md").read_text()
    assert "| joint | heldout | 3 |" in text and "95% paired bootstrap over pieces" in text


def test_model_spec_must_name_label_model_and_corpus():
    bench = benchmark_module()
    assert bench.parse_model("a=runs/x/models/a2mid@corpora/train") == ("a", "runs/x/models/a2mid", "corpora/train")
    for bad in ("emotion-compact-gam-mid7-ctrl3k-seq@corpora/train", "a=emotion-compact-gam-mid7-ctrl3k-seq", "=m@c", "a=@c"):
        with pytest.raises(argparse.ArgumentTypeError, match="LABEL=NAME_OR_DIR@CORPUS"):
            bench.parse_model(bad)
