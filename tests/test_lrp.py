"""LRP (``midlevel.explain.lrp``): captum's propagation checked against independent references, the
refusal of networks without rules, and the explanation object's data and plot. No trained checkpoint:
small untrained speech models and tiny networks."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("captum")

from midlevel.config import ModelConfig  # noqa: E402
from midlevel.errors import MidlevelError  # noqa: E402
from midlevel.explain.lrp import (LRPUnsupportedError, explain_lrp, lrp_listenable, lrp_network,  # noqa: E402
                                  relevance)
from midlevel.model import BlackBoxModel  # noqa: E402
from midlevel.training.speech import speech_config  # noqa: E402

SR = 16000


def speech_black_box(backbone: str = "compact", seed: int = 0) -> BlackBoxModel:
    torch.manual_seed(seed)
    return BlackBoxModel(speech_config("digit", "black_box", backbone)).eval()


def randomise_batch_norms(model: nn.Module, seed: int = 1) -> nn.Module:
    """Non-trivial running statistics and affine parameters (an untrained batch norm is the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.normal_(0, 0.3, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0, 0.3, generator=g)
    return model


def word(seconds: float = 1.2, seed: int = 0) -> np.ndarray:
    """A voiced burst between 0.3 and 0.7 s over faint noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    burst = ((t > 0.3) & (t < 0.7)) * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 900 * t))
    return (0.3 * burst + 0.003 * rng.normal(size=len(t))).astype(np.float32)


class TinyModel(BlackBoxModel):
    """A black box whose network is swapped for ``net`` (input (B, 1, bands, frames) -> (B, classes))."""

    def __init__(self, net: nn.Module, classes: int = 3) -> None:
        super().__init__(ModelConfig(kind="black_box", target_names=[f"c{i}" for i in range(classes)]))
        self.net = net

    def outputs_from_spectrogram(self, spec: torch.Tensor) -> torch.Tensor:
        return self.net(spec)


def gradient_x_input(net: nn.Module, x: torch.Tensor, index: int) -> torch.Tensor:
    x = x.detach().clone().requires_grad_()
    grad, = torch.autograd.grad(net(x)[:, index].sum(), x)
    return grad * x.detach()


# -- captum's propagation against references -----------------------------------------------------------------
def test_lrp_of_a_linear_map_is_weight_times_input():
    torch.manual_seed(0)
    model = TinyModel(nn.Sequential(nn.Flatten(), nn.Linear(4 * 5, 3, bias=False)))
    net = lrp_network(model)
    x = torch.randn(2, 1, 4, 5)
    rel, out = relevance(net, x, 1, epsilon=1e-9)
    w = model.net[1].weight[1].detach().reshape(1, 1, 4, 5)
    torch.testing.assert_close(rel, w * x, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(rel.sum(dim=(1, 2, 3)), out, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("bias", [False, True])
def test_lrp_epsilon_equals_gradient_x_input_on_a_relu_net(bias):
    """Ancona et al. (2018): for a ReLU network LRP with epsilon -> 0 is gradient x input, biases or not."""
    torch.manual_seed(1)
    model = TinyModel(nn.Sequential(nn.Flatten(), nn.Linear(30, 16, bias=bias), nn.ReLU(), nn.Linear(16, 3, bias=bias)))
    net = lrp_network(model)
    x = torch.randn(3, 1, 5, 6)
    rel, out = relevance(net, x, 2, epsilon=1e-9)
    torch.testing.assert_close(rel, gradient_x_input(model.net, x, 2), rtol=1e-4, atol=1e-6)
    gap = (out - rel.sum(dim=(1, 2, 3))).abs().max()
    if bias:  # the biases absorb relevance: not conservative
        assert gap > 1e-3
    else:  # without biases, relevance is conserved (a one-hidden-layer ReLU net is positively homogeneous)
        assert gap < 1e-4 * out.abs().max() + 1e-6


@pytest.mark.parametrize("backbone", ["compact", "raw_waveform"])
def test_speech_black_boxes_lrp_is_gradient_x_input_and_conserves_without_biases(backbone):
    """The two black-box kinds of the speech recipe: through folded batch norms, max pooling, global average
    pooling and flattening, LRP-0 equals gradient x input of the original network; an untrained one has no
    bias anywhere (its batch norms are identities), so its relevance adds up to its logit."""
    model = speech_black_box(backbone)
    x = model.frontend(torch.from_numpy(word()[None]))
    net = lrp_network(model)
    rel, out = relevance(net, x, 7, epsilon=1e-9)
    reference = gradient_x_input(lambda s: model.outputs_from_spectrogram(s), x, 7)
    # (an untrained logit is tiny, so epsilon 1e-9 itself shows at the level of 1e-4 of the largest relevance)
    torch.testing.assert_close(rel, reference, rtol=1e-3, atol=1e-3 * float(reference.abs().max()))
    assert float(rel.sum()) == pytest.approx(float(out[0]), rel=1e-3, abs=1e-6)

    randomise_batch_norms(model)  # now the folded batch norms have shifts: still gradient x input, no longer conserved
    # in float64: folded and unfolded batch norms round differently, and in float32 that can flip a ReLU or max-pool
    # choice whose inputs lie within rounding of each other (seen on some CPUs: 3 of 19200 inputs off by 3e-3 of the max)
    model, x = model.double(), x.double()
    net = lrp_network(model)
    rel, out = relevance(net, x, 7, epsilon=1e-9)
    reference = gradient_x_input(lambda s: model.outputs_from_spectrogram(s), x, 7)
    torch.testing.assert_close(rel, reference, rtol=1e-3, atol=1e-3 * float(reference.abs().max()))


def test_folding_batch_norms_keeps_the_function():
    model = randomise_batch_norms(speech_black_box("raw_waveform"))
    x = model.frontend(torch.from_numpy(word()[None]))
    with torch.no_grad():
        torch.testing.assert_close(lrp_network(model)(x), model.outputs_from_spectrogram(x), rtol=1e-4, atol=1e-5)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in lrp_network(model).modules())
    assert any(isinstance(m, nn.BatchNorm1d) for m in lrp_network(model, fold_batch_norms=False).modules())


def test_a_larger_epsilon_absorbs_relevance():
    model = speech_black_box()
    x = model.frontend(torch.from_numpy(word()[None]))
    net = lrp_network(model)
    sums = [float(relevance(net, x, 3, epsilon=e)[0].sum()) for e in (1e-9, 1.0)]
    with torch.no_grad():
        out = float(net(x)[0, 3])
    assert abs(out - sums[0]) < abs(out - sums[1])


# -- refusals ---------------------------------------------------------------------------------------------
def test_the_music_descriptors_are_refused_in_one_line():
    model = BlackBoxModel(ModelConfig(kind="black_box", backbone="compact_music", target_names=["a", "b"]))
    with pytest.raises(LRPUnsupportedError) as info:
        lrp_network(model)
    assert isinstance(info.value, MidlevelError)
    assert "\n" not in str(info.value) and "CompactMusicBackbone" in str(info.value)


@pytest.mark.parametrize("net, named", [
    (nn.Sequential(nn.Flatten(), nn.Linear(20, 3), nn.Sigmoid()), "Sigmoid"),
    (nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.GELU(), nn.Flatten(), nn.Linear(40, 3)), "GELU"),
])
def test_layers_without_a_rule_are_named(net, named):
    with pytest.raises(LRPUnsupportedError, match=named) as info:
        lrp_network(TinyModel(net))
    assert "\n" not in str(info.value)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.out = nn.Sequential(nn.Flatten(), nn.Linear(20, 3))

    def forward(self, x):
        return self.out(x + self.conv(x))


def test_a_functional_addition_is_refused():
    with pytest.raises(LRPUnsupportedError, match="add"):
        lrp_network(TinyModel(Residual()))


# -- the explanation object --------------------------------------------------------------------------------
def test_spectrogram_explanation_data_axes_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    model = speech_black_box()
    expl = explain_lrp(model, word(), sample_rate=SR, target="seven")
    d = expl.data()
    bands, frames = d["relevance"].shape
    assert d["axes"] == ["frequency", "time"] and d["explained"] == "seven" and d["explained_index"] == 7
    assert len(d["frequency_hz"]) == bands == model.frontend.n_bands and len(d["time_s"]) == frames == 121
    assert np.all(np.diff(d["frequency_hz"]) > 0) and d["time_s"][1] == pytest.approx(0.01)
    assert d["relevance_sum"] == pytest.approx(float(d["relevance"].sum()), rel=1e-5)
    assert d["conservation_gap"] == pytest.approx(d["logit"] - d["relevance_sum"])
    with torch.no_grad():
        logit = float(model(torch.from_numpy(word()[None]))[0, 7])
    assert d["logit"] == pytest.approx(logit, rel=1e-5, abs=1e-6)
    fig = expl.plot(tmp_path / "lrp.png")
    assert fig.__class__.__name__ == "Figure" and (tmp_path / "lrp.png").stat().st_size > 0


def test_waveform_explanation_over_several_windows(tmp_path):
    pytest.importorskip("matplotlib")
    model = speech_black_box("raw_waveform")
    audio = np.concatenate([word(), word(seed=1)[:8000]])  # 1.7 s: two windows
    expl = explain_lrp(model, audio, sample_rate=SR, epsilon=1e-9)  # an untrained logit is tiny: LRP-0
    d = expl.data()
    assert d["axes"] == ["time"] and d["frequency_hz"] is None and d["n_windows"] == 2
    assert d["relevance"].shape == (len(audio),) and d["time_s"][-1] == pytest.approx((len(audio) - 1) / SR)
    assert d["explained"] == model.config.target_names[d["explained_index"]]
    with torch.no_grad():  # the track's output is the mean of its windows' (as the model's predict)
        assert d["logit"] == pytest.approx(float(model.predict(audio, sample_rate=SR).targets[d["explained_index"]]),
                                           rel=1e-4)
    assert abs(d["relative_gap"]) < 1e-3  # untrained: no biases
    times, per_frame = expl.over_time(0.01)
    assert len(per_frame) == 170 and float(per_frame.sum()) == pytest.approx(d["relevance_sum"], rel=1e-4)
    assert expl.plot().__class__.__name__ == "Figure"


def test_unknown_output_is_refused():
    with pytest.raises(MidlevelError, match="no output"):
        explain_lrp(speech_black_box(), word(), sample_rate=SR, target="eleven")


def test_listenable_parts_add_up_and_keep_the_top_frames():
    model = speech_black_box()
    audio = word()
    expl = explain_lrp(model, audio, sample_rate=SR, target=2)
    parts = lrp_listenable(model, audio, expl, sample_rate=SR, fraction=0.2)
    assert [p.kind for p in parts] == ["time", "time-frequency"]
    for p in parts:
        np.testing.assert_allclose(p.part + p.rest, audio, atol=1e-5)
    _, per_frame = expl.over_time()
    kept = np.abs(parts[0].part).reshape(-1, 160)[:, 40:120].max(axis=1) > 0  # mid-frame samples of each 10 ms
    top = np.argsort(-per_frame)[:10]
    top = top[(top > 0) & (top < 120) & (per_frame[top] > 0)]
    assert kept[top].all()
