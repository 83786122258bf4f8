"""Weights interpolated between a model and its continuation, one alpha per part: what a per-part average ships."""

import pytest
import torch
from script_loader import load_script

from midlevel import load
from midlevel.zoo import DEFAULT_MODEL


@pytest.fixture(scope="module")
def study():
    return load_script("studies/weight_interpolation.py")


def test_each_part_moves_by_its_own_alpha_and_the_longest_prefix_wins(study):
    base = load(DEFAULT_MODEL).eval()
    far = load(DEFAULT_MODEL).eval()
    with torch.no_grad():
        for p in far.parameters():
            p.add_(1.0)
    mixed = study.interpolated(base, far, 0.25, {"backbone": 0.5, "backbone.salience": 1.0})
    a, b, m = base.state_dict(), far.state_dict(), mixed.state_dict()
    names = {"backbone.salience": 1.0, "backbone.cnn": 0.5, "head": 0.25}
    for prefix, alpha in names.items():
        key = next(k for k, _ in far.named_parameters() if k.startswith(prefix))
        assert torch.allclose(m[key], a[key] + alpha * (b[key] - a[key]), atol=1e-6), (prefix, key)


def test_an_alpha_spec_reads_one_alpha_then_parts_and_refuses_a_malformed_one(study):
    assert study.parse_alpha("0.5") == (0.5, {})
    assert study.parse_alpha("0/backbone.salience=1") == (0.0, {"backbone.salience": 1.0})
    assert study.alpha_label("0/backbone.salience=1") == "alpha 0, backbone.salience 1"
    with pytest.raises(SystemExit, match="ALPHA/PREFIX=ALPHA"):
        study.parse_alpha("0/backbone.salience")
