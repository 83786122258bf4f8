"""Training beyond one process: ``--device`` and data parallelism under torchrun (gloo, on the CPU).

The torchrun runs use the toy spectrograms of ``test_training`` (64 training clips, global batch 16) and
one thread per process, so two processes fit the CI machine's two cores.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_training import small_model, toy_set

from midlevel.cli import main
from midlevel.training.distributed import DeviceError, Parallel, resolve_device
from midlevel.training.loops import TrainSettings, train_network

TESTS = Path(__file__).resolve().parent
SETTINGS = dict(setup="joint", epochs=4, batch_size=16, lr=3e-3, patience=10, seed=3)
SCRIPT = f"""
import json, os, sys
sys.path.insert(0, {str(TESTS)!r})
import torch
from test_training import small_model, toy_set
from midlevel.training.loops import TrainSettings, train_network
torch.set_num_threads(1)
out, epochs = sys.argv[1], int(sys.argv[2])
model = small_model()
state = train_network(model, toy_set(64, 0), toy_set(16, 1), TrainSettings(**{{**{SETTINGS!r}, "epochs": epochs}}),
                      out, progress=False)
# one file per rank: two ranks printing to torchrun's shared stdout can interleave their lines
with open(out + "-history-rank" + os.environ.get("RANK", "0") + ".json", "w") as f:
    json.dump([[h["train_loss"], h["score"]] for h in state["history"]], f)
"""


def torchrun(script: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)


def finished(proc: subprocess.Popen, out_dir: Path) -> list[list[list[float]]]:
    """Each rank's (train loss, validation score) per epoch, in rank order, once the run has ended well."""
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    files = sorted(out_dir.parent.glob(f"{out_dir.name}-history-rank*.json"))
    return [json.loads(f.read_text()) for f in files]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "best" / "model.safetensors"))


@pytest.fixture(scope="module")
def script(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ddp") / "train_toy.py"
    path.write_text(SCRIPT)
    return path


@pytest.mark.slow
def test_two_gloo_processes_follow_one_process_with_the_same_global_batch(script, tmp_path):
    torch.set_num_threads(1)
    one = train_network(small_model(), toy_set(64, 0), toy_set(16, 1), TrainSettings(**SETTINGS), tmp_path / "one",
                        progress=False)["history"]
    ranks = finished(torchrun(script, str(tmp_path / "two"), "4"), tmp_path / "two")
    assert len(ranks) == 2 and ranks[0] == ranks[1]  # every rank validated the same model
    two = np.array(ranks[0])
    single = np.array([[h["train_loss"], h["score"]] for h in one])
    # the loss follows the one-process curve; batch norm sees 8 clips per rank instead of 16, hence the tolerance
    np.testing.assert_allclose(two[:, 0], single[:, 0], rtol=0.02)
    np.testing.assert_allclose(two[:, 1], single[:, 1], atol=0.05)
    assert two[-1, 0] < two[0, 0] * 0.8  # and it learns
    assert not (tmp_path / "two" / "best" / ".partial").exists()
    state = json.loads((tmp_path / "two" / "state.json").read_text())
    assert state["epoch"] == 3 and len(state["history"]) == 4  # rank 0 wrote one state, not two


@pytest.mark.slow
def test_a_killed_torchrun_run_resumes_to_the_same_weights(script, tmp_path):
    whole = finished(torchrun(script, str(tmp_path / "whole"), "8"), tmp_path / "whole")
    proc = torchrun(script, str(tmp_path / "cut"), "8")
    state, deadline = tmp_path / "cut" / "state.json", time.time() + 240
    while proc.poll() is None and time.time() < deadline:
        if state.is_file():  # the first epoch is saved
            break
        time.sleep(0.05)
    # both workers (torchrun starts them in sessions of their own) and torchrun, with no chance to clean up
    subprocess.run(["pkill", "-9", "-f", str(tmp_path / "cut")], check=False)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert json.loads(state.read_text())["epoch"] < 7, "the run ended before it could be killed"
    resumed = finished(torchrun(script, str(tmp_path / "cut"), "8"), tmp_path / "cut")
    assert resumed[0] == whole[0]
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_rank_trains_on_its_contiguous_share_of_the_global_batch():
    shares = [Parallel(r, 3).share(10) for r in range(3)]
    assert [(s.start, s.stop) for s in shares] == [(0, 4), (4, 7), (7, 10)]
    assert Parallel(0, 2).trainable_batch(4) and not Parallel(0, 2).trainable_batch(3)
    assert Parallel().trainable_batch(1)  # one process trains on every batch, as before


def test_devices_that_are_not_here_are_refused_in_one_line(tmp_path, capsys):
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(DeviceError, match="--device must be one of auto, cpu, cuda, mps"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            resolve_device("cuda")
    assert main(["train", "--corpus", str(tmp_path), "--out", str(tmp_path / "run"), "--device", "gpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["midlevel: error: --device must be one of auto, cpu, cuda, mps (cuda:N for one GPU); got 'gpu'"]
    assert not (tmp_path / "run").exists()


def test_training_on_an_explicit_cpu_device_is_the_default_run(tmp_path):
    train, valid = toy_set(32, 0), toy_set(16, 1)
    settings = TrainSettings(**{**SETTINGS, "epochs": 2})
    a, b = small_model(), small_model()
    train_network(a, train, valid, settings, tmp_path / "a", progress=False)
    train_network(b, train, valid, settings, tmp_path / "b", progress=False, device="cpu")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert all(p.device.type == "cpu" for p in b.parameters())


@pytest.mark.slow
def test_torchrun_trains_the_whole_family_from_one_shared_cache(tmp_path):
    """``torchrun -m midlevel train``: rank 0 writes the spectrogram cache and every model; one table printed."""
    from test_recipes import write_layout

    write_layout(tmp_path / "data")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "midlevel", "train", "--corpus", str(tmp_path / "data"), "--out", str(tmp_path / "out"),
                          "--epochs", "2", "--batch-size", "8", "--joint-heads", "linear", "--heads", "linear"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("A2Mid2E-Joint") == 1  # rank 0 reports
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(results["models"]) == {"a2mid", "a2mid2e-linear", "independent-linear", "joint-linear", "a2e"}
    assert len(list((tmp_path / "out" / "cache").glob("logspec-*.npy"))) == 3  # one per split, written once
    assert not [p for p in (tmp_path / "out").rglob("*") if ".tmp" in p.name or p.name.endswith(".partial")]
