"""The denormal benchmark times both settings of the flag on real zoo models and compares their outputs."""

import json

import pytest
import torch
from script_loader import load_script


def test_both_settings_are_timed_and_agree(tmp_path):
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormals")
    bench = load_script("benchmarks/denormals.py")
    threads = torch.get_num_threads()
    try:
        assert bench.main(["--models", "emotion-equivariant-a2e-rand3k,emotion-compact-gam-mid7-ctrl3k-seq", "--reps", "2", "--batch", "2",
                           "--out", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    summary = json.loads((tmp_path / "denormals.json").read_text())
    assert (tmp_path / "denormals.md").read_text().count("| emotion-") == 6
    for cases in summary["models"].values():
        assert set(cases) == {"forward", "backward", "explain"}
        for v in cases.values():
            assert v["off_s"] > 0 and v["on_s"] > 0 and v["ratio"] > 0
            assert v["max_abs_difference"] < 1e-5  # values below 1e-38 change no output
    assert (torch.tensor([1e-40]) * 1.0).item() != 0.0  # the benchmark leaves the flag off
