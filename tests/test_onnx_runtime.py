"""The onnxruntime runtime: ``explain`` with the per-window network in onnxruntime gives PyTorch's results to
float32 rounding, keeps the decomposition exact, refuses a graph of other or changed weights, and
``midlevel annotate --runtime onnxruntime`` writes the same table with 1 or 2 workers and records its runtime.

Real shipped models on real audio; onnxruntime itself computes every number compared (no mocks)."""

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from midlevel import example_clip, load_audio
from midlevel.annotate import AnnotateError, annotate, one_thread
from midlevel.cli import main
from midlevel.onnx_runtime import OnnxWindowNetwork, StaleGraphError, cache_dir, cached_window_graph
from midlevel.checkpoint import weights_sha256
from midlevel.zoo import REGISTRY, load

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytest.importorskip("pyarrow")

#: the smallest installed explainable and black-box music entries: the cheapest real models of each kind
EXPLAINABLE = min((e for e in REGISTRY.values() if e.shipped and e.explainable and e.task == "music-emotion"),
                  key=lambda e: e.size_bytes).name
BLACK_BOX = min((e for e in REGISTRY.values() if e.shipped and not e.explainable and e.task == "music-emotion"),
                key=lambda e: e.size_bytes).name
SR = 22050
#: float32 arithmetic in another order (onnxruntime's kernels): agreement in rating units
TOL = 2e-4


@pytest.fixture(scope="module", autouse=True)
def fresh_cache(tmp_path_factory):
    """Graphs built here, not read from an earlier run's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MIDLEVEL_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def model():
    return load(EXPLAINABLE)


@pytest.fixture(scope="module")
def network(model):
    return OnnxWindowNetwork(model, threads=1)


@pytest.fixture(scope="module")
def song(model):
    """22 s of the bundled recording (played twice): several overlapping windows and an end-aligned last one."""
    assert model.config.sample_rate == SR
    return np.tile(load_audio(example_clip(), SR).samples, 2)[: 22 * SR]


def test_explain_on_onnxruntime_equals_explain_on_torch(model, network, song):
    with one_thread():
        reference = model.explain(song, sample_rate=SR)
        fast = model.explain(song, sample_rate=SR, window_network=network)
    np.testing.assert_allclose(fast.window_concepts, reference.window_concepts, atol=TOL)
    np.testing.assert_allclose(fast.concepts, reference.concepts, atol=TOL)
    np.testing.assert_allclose(fast.contributions, reference.contributions, atol=TOL)
    np.testing.assert_allclose(fast.targets, reference.targets, atol=TOL)
    np.testing.assert_array_equal(fast.intercept, reference.intercept)
    # the decomposition stays exact: it is computed from the concepts the runtime gave
    np.testing.assert_allclose(fast.intercept + fast.contributions.sum(axis=1), fast.targets, rtol=0, atol=1e-12)
    assert fast.flags() == reference.flags()
    if reference.ood_score is None:
        assert fast.ood_score is None
    else:
        assert fast.ood_score == pytest.approx(reference.ood_score, abs=1e-3)


@pytest.mark.slow
def test_a_black_box_predicts_the_same_on_onnxruntime(song):
    black_box = load(BLACK_BOX)
    with one_thread():
        reference = black_box.predict(song, sample_rate=SR)
        fast = black_box.predict(song, sample_rate=SR, window_network=OnnxWindowNetwork(black_box, threads=1))
    np.testing.assert_allclose(fast.targets, reference.targets, atol=TOL)
    np.testing.assert_allclose(fast.window_concepts, reference.window_concepts)  # (W, 0): no concepts


def test_a_graph_of_other_weights_is_refused(model, network, song):
    graph = cached_window_graph(model)  # what ``network`` was built from, read back from the cache
    changed = load(EXPLAINABLE)
    with torch.no_grad():
        changed.concept_layer.bias.add_(1.0)
    with pytest.raises(StaleGraphError, match="build it from the model it runs for"):
        OnnxWindowNetwork(changed, graph=graph, threads=1)
    # weights changed in place after the session was built: refused, not answered with the old weights
    current = OnnxWindowNetwork(load(EXPLAINABLE), graph=graph, threads=1)
    with torch.no_grad():
        current.model.concept_layer.bias.add_(1.0)
    with pytest.raises(StaleGraphError, match="changed after"):
        current.model.explain(song, sample_rate=SR, window_network=current)


def test_the_graph_is_built_once_and_a_broken_cache_file_is_rebuilt(model, network):
    (kept,) = (cache_dir() / "onnx-runtime").glob(f"{weights_sha256(model)[:32]}-*.onnx")  # ``network`` built it
    assert cached_window_graph(model) == kept.read_bytes()
    kept.write_bytes(kept.read_bytes()[:1000])  # a copy cut short
    rebuilt = cached_window_graph(model)
    assert kept.read_bytes() == rebuilt and len(rebuilt) > 1000


@pytest.fixture(scope="module")
def library(tmp_path_factory, song, model):
    root = tmp_path_factory.mktemp("ort") / "lib"
    root.mkdir()
    for i, seconds in enumerate((3, 12, 22)):
        sf.write(root / f"{i}.flac", song[: seconds * SR], SR)
    (root / "bad.wav").write_bytes(b"RIFF not really")
    return root


def test_annotate_on_onnxruntime_matches_torch_and_is_the_same_with_two_workers(library, tmp_path, capsys):
    torch_table, one, two = tmp_path / "torch.parquet", tmp_path / "one.parquet", tmp_path / "two.parquet"
    annotate(library, torch_table, model=EXPLAINABLE, progress=False)
    summary = annotate(library, one, model=EXPLAINABLE, runtime="onnxruntime", progress=False)
    assert (summary["runtime"], summary["annotated"], summary["failed"]) == ("onnxruntime", 3, 1)
    assert main(["annotate", str(library), "--out", str(two), "--model", EXPLAINABLE, "--workers", "2",
                 "--runtime", "onnxruntime", "--no-progress"]) == 2  # the bad file
    assert f"with {EXPLAINABLE} on onnxruntime" in capsys.readouterr().out
    assert two.read_bytes() == one.read_bytes()
    reference, fast = pd.read_parquet(torch_table), pd.read_parquet(one)
    assert list(fast.columns) == list(reference.columns) and list(fast["path"]) == list(reference["path"])
    assert set(reference["runtime"]) == {"torch"} and set(fast["runtime"]) == {"onnxruntime"}
    numbers = [c for c in reference.columns if c.startswith(("concept.", "target.", "contrib."))]
    np.testing.assert_allclose(fast[numbers].to_numpy(float), reference[numbers].to_numpy(float), atol=TOL)
    assert list(fast["flags"]) == list(reference["flags"])


def test_a_run_resumes_only_with_its_own_runtime(library, tmp_path):
    out = tmp_path / "t.parquet"
    parts = tmp_path / "t.parquet.parts"
    annotate(library / "0.flac", out, model=EXPLAINABLE, progress=False, part_rows=1)  # finished: parts removed
    assert not parts.exists()
    from midlevel.annotate import PartStore
    from midlevel.zoo import weights_sha256 as entry_sha256

    with PartStore(out, EXPLAINABLE, entry_sha256(EXPLAINABLE), "torch"):  # an unfinished torch run's parts
        pass
    with pytest.raises(AnnotateError, match="runtime torch"):
        annotate(library, out, model=EXPLAINABLE, runtime="onnxruntime", progress=False)
    with pytest.raises(AnnotateError, match="--runtime 'tensorrt'"):
        annotate(library, out, model=EXPLAINABLE, runtime="tensorrt", progress=False)


@pytest.mark.slow
def test_the_ray_engine_on_onnxruntime_writes_the_same_bytes(library, tmp_path):
    ray = pytest.importorskip("ray", reason="the 'ray' extra is not installed")
    local = tmp_path / "local.parquet"
    annotate(library, local, model=EXPLAINABLE, runtime="onnxruntime", progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = annotate(library, tmp_path / "ray.parquet", model=EXPLAINABLE, workers=2, engine="ray",
                           runtime="onnxruntime", progress=False)
    finally:
        ray.shutdown()
    assert (summary["engine"], summary["runtime"]) == ("ray", "onnxruntime")
    assert (tmp_path / "ray.parquet").read_bytes() == local.read_bytes()
