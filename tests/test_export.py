"""ONNX export: onnxruntime must give what the PyTorch model gives, for whole tracks."""

import argparse
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import soundfile as sf
import soxr
import torch
from torch import nn

from midlevel import ModelConfig, TwoStageModel, example_clip, load_audio
from midlevel.checkpoint import ModelLoadError, read_config
from midlevel.cli import add_export_parser
from midlevel.export import ExportError, export_onnx, read_onnx_metadata
from midlevel.model import BlackBoxModel, slice_windows, window_starts

SR = 22050
EXAMPLE_SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "onnx_inference.py"
TOL = 1e-4


def calibrated(model, clips: torch.Tensor):
    """Give a random-init model the statistics training would, so parity covers realistic values.

    At random init BatchNorm and the front-end normalisation are identities and every concept
    sits near 5.5, which would hide errors. Here they are measured on real audio, and the last
    layer is widened so outputs spread over the rating scale (GAM curves on several pieces).
    """
    with torch.no_grad():
        logspec = model.frontend.log_spectrogram(clips)
        model.frontend.set_normalization(logspec.mean(dim=(0, 2)), logspec.std(dim=(0, 2)))
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the calibration pass
        model.train()
        model.backbone(model.frontend(clips))
        model.eval()
        last = model.concept_layer if isinstance(model, TwoStageModel) else model.target_layer
        out = model.outputs_from_spectrogram(model.frontend(clips))
        last.weight.mul_(2.5 / out.std(dim=0).clamp_min(1e-6)[:, None])
        last.bias.add_(5.5 - model.outputs_from_spectrogram(model.frontend(clips)).mean(dim=0))
    return model


@pytest.fixture(scope="module")
def real_audio():
    return load_audio(example_clip(), SR).samples


def calibration_clips(real):
    noise = np.random.default_rng(1).standard_normal(3 * SR).astype(np.float32)
    return torch.from_numpy(np.stack([real[:3 * SR], real[6 * SR:9 * SR], 0.3 * noise, 0.02 * noise]))


def make(kind, real):
    torch.manual_seed(0)
    if kind == "black_box":
        model = BlackBoxModel(ModelConfig(kind="black_box", name="test-black-box"))
    else:
        model = TwoStageModel(ModelConfig(head=kind, name=f"test-{kind}"))
    return calibrated(model, calibration_clips(real))


def run_cli(*argv):
    parser = argparse.ArgumentParser()
    add_export_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["export-onnx", *map(str, argv)])
    return args.func(args)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, real_audio):
    """{kind: (model, onnx path)}; the linear one goes through a saved folder and the CLI."""
    root = tmp_path_factory.mktemp("onnx")
    out = {}
    linear = make("linear", real_audio)
    linear.save_pretrained(root / "linear-model")
    assert run_cli(root / "linear-model", root / "linear.onnx") == 0
    out["linear"] = (linear, root / "linear.onnx")
    for kind in ("gam", "black_box"):
        model = make(kind, real_audio)
        out[kind] = (model, export_onnx(model, root / f"{kind}.onnx"))
    return out


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(sess, waves):
    outs = sess.run(None, {"wave": np.atleast_2d(waves).astype(np.float32)})
    return dict(zip([o.name for o in sess.get_outputs()], outs))


def clip(source, seconds, real):
    n = int(seconds * SR)
    if source == "real":
        return np.tile(real, n // len(real) + 1)[:n]
    return (np.random.default_rng(n).standard_normal(n) * 0.2).astype(np.float32)


@pytest.mark.parametrize("n_samples", [1, 7, 8, 9, 11, 12, 13, 14, 30])
@pytest.mark.parametrize("window,hop", [(8, 3), (8, 4), (5, 5)])
def test_the_graphs_windows_are_the_documented_ones(n_samples, window, hop):
    """The one window rule (symbolic, so the exported graph shares it) against a plain reading of the docs:
    every hop-th start, plus one end-aligned window where the hops leave a tail; a short track: one window."""
    reference = [0] if n_samples <= window else list(range(0, n_samples - window + 1, hop))
    if reference[-1] + window < n_samples:
        reference.append(n_samples - window)
    assert window_starts(n_samples, window, hop) == reference
    wave = torch.arange(1, n_samples + 1, dtype=torch.float32)
    padded = np.pad(wave.numpy(), (0, window))
    expected = np.stack([padded[s:s + window] for s in reference])
    got = slice_windows(wave[None], window, hop)  # what the graph and explain() cut
    np.testing.assert_array_equal(got[0].numpy(), expected)


def test_graph_is_checked_and_dynamic_in_batch_and_length(exported):
    for kind, (_, path) in exported.items():
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto, full_check=True)
        (wave,) = proto.graph.input
        assert wave.name == "wave"
        assert [d.dim_param for d in wave.type.tensor_type.shape.dim] == ["batch", "samples"]
        expected = ["targets", "window_targets"] if kind == "black_box" else [
            "concepts", "targets", "contributions", "window_concepts"]
        assert [o.name for o in proto.graph.output] == expected


@pytest.mark.parametrize("source", ["random", "real"])
@pytest.mark.parametrize("head", ["linear", "gam"])
def test_onnxruntime_matches_explain_for_whole_tracks(exported, real_audio, head, source):
    model, path = exported[head]
    sess = session(path)
    for seconds in (1, 10, 37):
        wave = clip(source, seconds, real_audio)
        expl = model.explain(wave, sample_rate=SR)
        out = run(sess, wave)
        assert out["window_concepts"].shape[1] == len(expl.window_starts)
        np.testing.assert_allclose(out["concepts"][0], expl.concepts, atol=TOL, rtol=0)
        np.testing.assert_allclose(out["window_concepts"][0], expl.window_concepts, atol=TOL, rtol=0)
        np.testing.assert_allclose(out["targets"][0], expl.targets, atol=TOL, rtol=0)
        np.testing.assert_allclose(out["contributions"][0], expl.contributions, atol=TOL, rtol=0)
        assert np.ptp(out["concepts"]) > 0.5  # the calibrated model's values spread out
        np.testing.assert_allclose(out["contributions"].sum(-1)[0] + expl.intercept, out["targets"][0], atol=1e-5)


def test_one_window_is_model_forward_and_a_batch_is_its_tracks(exported, real_audio):
    model, path = exported["gam"]
    sess = session(path)
    waves = np.stack([clip("real", 10, real_audio), clip("random", 10, real_audio)])
    batch = run(sess, waves)
    with torch.no_grad():
        reference = model(torch.from_numpy(waves))
    for name, ref in zip(["concepts", "targets", "contributions"], reference):
        np.testing.assert_allclose(batch[name], ref.numpy(), atol=TOL, rtol=0)
    longer = np.stack([clip("real", 23, real_audio), clip("random", 23, real_audio)])
    together = run(sess, longer)
    for i in range(2):
        alone = run(sess, longer[i])
        for name in together:
            np.testing.assert_allclose(together[name][i], alone[name][0], atol=1e-5, rtol=0)


def test_black_box_matches_predict_targets(exported, real_audio):
    model, path = exported["black_box"]
    sess = session(path)
    for seconds in (1, 37):
        wave = clip("real", seconds, real_audio)
        np.testing.assert_allclose(run(sess, wave)["targets"][0], model.predict_targets(wave, sample_rate=SR),
                                   atol=TOL, rtol=0)


def test_metadata_names_the_model_and_pins_its_weights(exported, tmp_path):
    meta = read_onnx_metadata(exported["linear"][1])
    config, payload = read_config(exported["linear"][1].parent / "linear-model")
    assert meta["weights_sha256"] == payload["weights_sha256"]
    assert meta["model_name"] == "test-linear" and meta["model_kind"] == "two_stage" and meta["head"] == "linear"
    assert meta["concept_names"] == config.concept_names and meta["target_names"] == config.target_names
    assert meta["concept_scale"] == [1.0, 10.0] and meta["target_scale"] == [1.0, 9.0]
    assert meta["sample_rate"] == SR and meta["window_seconds"] == 10.0 and meta["hop_seconds"] == 5.0
    assert (meta["window_samples"], meta["hop_samples"]) == (config.window_samples, config.hop_samples)
    bb = read_onnx_metadata(exported["black_box"][1])
    assert bb["model_kind"] == "black_box" and "concept_names" not in bb
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph([], "g", [], [])), str(tmp_path / "other.onnx"))
    with pytest.raises(ExportError, match="no midlevel metadata"):
        read_onnx_metadata(tmp_path / "other.onnx")


def test_bad_model_or_path_raise_errors_that_name_them(exported, tmp_path):
    with pytest.raises(ModelLoadError, match="no-such-model"):
        run_cli("no-such-model", tmp_path / "x.onnx")
    model = exported["gam"][0]
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ExportError, match="a-file"):
        export_onnx(model, tmp_path / "a-file" / "x.onnx")
    with pytest.raises(ExportError, match="is a directory"):
        export_onnx(model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # nothing half-written


def test_an_opset_the_exporter_cannot_write_is_refused_not_replaced(exported, tmp_path):
    model = exported["black_box"][0].train()
    with pytest.raises(ExportError, match="opset 16"):
        export_onnx(model, tmp_path / "old.onnx", opset=16)
    assert model.training  # export evaluates in eval mode and gives the model back as it was
    model.eval()
    assert not (tmp_path / "old.onnx").exists()


def run_example(*args, without):
    """The example script in a fresh interpreter where importing ``without`` fails."""
    code = (f"import sys, runpy; sys.modules[{without!r}] = None; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code, str(EXAMPLE_SCRIPT), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_example_script_runs_without_torch_and_matches_explain(exported, real_audio, tmp_path):
    model, path = exported["gam"]
    audio = tmp_path / "clip-44k.wav"  # another rate and two channels: both must be handled
    left = soxr.resample(real_audio[:4 * SR], SR, 44100)
    sf.write(audio, np.stack([left, 0.5 * left[::-1]], axis=1), 44100)

    done = run_example(path, audio, without="torch")
    assert done.returncode == 0, done.stderr
    assert "1 window(s)" in done.stdout and "flags: padded" in done.stdout
    assert all(name in done.stdout for name in model.config.concept_names + model.config.target_names)

    _, out, _ = runpy.run_path(str(EXAMPLE_SCRIPT))["run"](str(path), str(audio))
    expl = model.explain(audio)
    np.testing.assert_allclose(out["contributions"], expl.contributions, atol=TOL, rtol=0)
    np.testing.assert_allclose(out["targets"], expl.targets, atol=TOL, rtol=0)

    refused = run_example(path, audio, without="soxr")
    assert refused.returncode == 1 and "44100 Hz" in refused.stderr and "pip install soxr" in refused.stderr


def test_short_transforms_export_as_a_product_that_onnxruntime_matches(real_audio, tmp_path):
    """The front-end's DFT is exported as matrix products (onnxruntime's DFT kernel is slow on short transforms):
    one for the speech entries' 400 points, two for the music models' 2048; both give what PyTorch's FFT gives
    (music: ``test_onnxruntime_matches_explain_for_whole_tracks``)."""
    import midlevel

    speech = midlevel.load("digit-cnn-logistic-phon9-synth4k")
    rate = speech.config.sample_rate
    path = export_onnx(speech, tmp_path / "speech.onnx")
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert not ops & {"DFT", "STFT"} and "MatMul" in ops
    wave = soxr.resample(real_audio[: 7 * SR], SR, rate).astype(np.float32)
    expl = speech.explain(wave, sample_rate=rate)
    out = run(session(path), wave)
    np.testing.assert_allclose(out["concepts"][0], expl.concepts, atol=TOL, rtol=0)
    np.testing.assert_allclose(out["targets"][0], expl.targets, atol=TOL, rtol=0)
    assert speech.frontend._export_filtered is None  # the products were only for the export
    music = TwoStageModel(ModelConfig(backbone="compact")).eval()
    ops = {node.op_type for node in onnx.load(str(export_onnx(music, tmp_path / "music.onnx"))).graph.node}
    assert not ops & {"DFT", "STFT"}


def test_the_front_end_exports_without_gather_and_denormal_weights_as_zero(tmp_path):
    """The front-end's framing is slices and a convolution, not a ``Gather`` per sample (onnxruntime runs that as
    a slow copy); weights below float's smallest normal number are stored as zero (onnxruntime would compute
    with them many times slower), which is what PyTorch computes with under ``flush_denormals``."""
    from onnx import numpy_helper

    from midlevel.numerics import flush_denormals

    torch.manual_seed(0)
    music = TwoStageModel(ModelConfig(backbone="compact")).eval()
    conv = next(m for m in music.backbone.modules() if isinstance(m, nn.Conv2d))
    with torch.no_grad():
        conv.weight[0, 0, 0, 0] = 1e-40
    proto = onnx.load(str(export_onnx(music, tmp_path / "music.onnx")))
    frontend = [n.op_type for n in proto.graph.node
                if any(p.key == "pkg.torch.onnx.name_scopes" and "model.frontend" in p.value for p in n.metadata_props)]
    assert "Conv" in frontend and not set(frontend) & {"Gather", "GatherND", "GatherElements", "DFT", "STFT"}
    tiny = np.finfo(np.float32).tiny
    for tensor in proto.graph.initializer:
        values = numpy_helper.to_array(tensor)
        if values.dtype == np.float32:
            assert not np.any((values != 0) & (np.abs(values) < tiny)), tensor.name
    wave = (np.random.default_rng(3).standard_normal(12 * SR) * 0.1).astype(np.float32)
    with torch.inference_mode(), flush_denormals():
        expected = [o[0].numpy() for o in music.track_outputs(torch.from_numpy(wave)[None])]
    out = run(session(tmp_path / "music.onnx"), wave)
    for name, value in zip(["concepts", "targets", "contributions", "window_concepts"], expected):
        np.testing.assert_allclose(out[name][0], value, atol=TOL, rtol=0)
