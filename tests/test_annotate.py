"""``midlevel annotate``: a table row per good file with exactly ``model.explain``'s values, bad files in the
errors table, resuming after a kill to the same bytes, and the same table from 1 or 2 workers and from Ray.

Real audio written here (a few seconds each), the smallest shipped zoo entry, no mocks."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from midlevel.annotate import AnnotateError, PartStore, annotate, expand_inputs, one_thread
from midlevel.cli import main
from midlevel.zoo import REGISTRY, load, weights_sha256

pytest.importorskip("pyarrow")

#: the smallest installed explainable entry: the cheapest real model
MODEL = min((e for e in REGISTRY.values() if e.shipped and e.explainable and e.task == "music-emotion"),
            key=lambda e: e.size_bytes).name
SR = 22050


def clip(seconds: float, seed: int) -> np.ndarray:
    """A few notes over a little noise: music-like enough, different for every seed."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = sum(0.15 * np.sin(2 * np.pi * f * t) * (1 + np.sin(2 * np.pi * rng.uniform(0.5, 3) * t)) / 2
            for f in rng.uniform(110, 880, size=3))
    return (x + 0.01 * rng.normal(size=t.size)).astype(np.float32)


GOOD = ["a.wav", "b.flac", "c.ogg", "sub/d.wav", "sub/e.flac", "sub/deeper/f.ogg"]
BAD = {"empty.wav": "file is empty", "corrupt.mp3": "cannot decode", "sub/text.flac": "cannot decode"}


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    """6 good clips (wav/flac/ogg, 1.5-4.5 s, in subfolders), 3 bad files and a text file that is skipped."""
    root = tmp_path_factory.mktemp("annotate") / "lib"
    for i, name in enumerate(GOOD):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / name, clip(1.5 + 0.6 * i, i), SR)
    (root / "empty.wav").write_bytes(b"")
    (root / "corrupt.mp3").write_bytes(np.random.default_rng(9).bytes(4000))
    (root / "sub" / "text.flac").write_text("not audio\n")
    (root / "notes.txt").write_text("not an input\n")
    return root


@pytest.fixture(scope="module")
def local_table(library, tmp_path_factory):
    """The reference run: local engine, one worker (this process)."""
    out = tmp_path_factory.mktemp("ref") / "table.parquet"
    summary = annotate(library, out, model=MODEL, workers=1, progress=False)
    return out, summary


def test_one_row_per_good_file_and_the_bad_ones_in_the_errors_table(library, local_table):
    out, summary = local_table
    table = pd.read_parquet(out)
    assert list(table["path"]) == sorted(str(library / n) for n in GOOD)  # input order: the folder's, sorted
    errors = pd.read_parquet(out.with_name("table.errors.parquet"))
    assert sorted(errors["path"]) == sorted(str(library / n) for n in BAD)
    for path, reason in zip(errors["path"], errors["reason"]):
        expected = BAD[Path(path).relative_to(library).as_posix()]
        assert expected in reason and "\n" not in reason and not reason.startswith(path)
    assert (summary["inputs"], summary["annotated"], summary["failed"], summary["resumed"]) == (9, 6, 3, 0)
    assert not Path(f"{out}.parts").exists()  # removed once the tables are written
    n_concepts, n_targets = len(REGISTRY[MODEL].concept_names), len(REGISTRY[MODEL].target_names)
    assert len([c for c in table.columns if c.startswith("contrib.")]) == n_concepts * n_targets
    assert list(table.columns[:7]) == ["path", "model", "weights_sha256", "duration_s", "n_windows", "flags",
                                       "ood_score"]


def test_the_rows_are_what_model_explain_says(library, local_table):
    table = pd.read_parquet(local_table[0]).set_index("path")
    model = load(MODEL)
    for path, row in table.iterrows():
        with one_thread():  # as every worker computes
            e = model.explain(path)
        assert row["model"] == e.model_name == MODEL and row["weights_sha256"] == weights_sha256(MODEL)
        assert row["duration_s"] == e.duration and row["n_windows"] == len(e.window_starts)
        assert row["flags"] == ",".join(e.flags()) and row["notes"] == " | ".join(e.notes)
        assert row["ood_score"] == e.ood_score or (np.isnan(row["ood_score"]) and e.ood_score is None)
        np.testing.assert_array_equal(row[[f"concept.{c}" for c in e.concept_names]].to_numpy(float), e.concepts)
        np.testing.assert_array_equal(row[[f"target.{t}" for t in e.target_names]].to_numpy(float), e.targets)
        np.testing.assert_array_equal(row[[f"intercept.{t}" for t in e.target_names]].to_numpy(float), e.intercept)
        contrib = [[row[f"contrib.{t}.{c}"] for c in e.concept_names] for t in e.target_names]
        np.testing.assert_array_equal(np.array(contrib, float), e.contributions)


def test_cli_with_two_workers_writes_the_same_bytes(library, local_table, tmp_path, capsys):
    out, _ = local_table
    two = tmp_path / "two.parquet"
    assert main(["annotate", str(library), "--out", str(two), "--model", MODEL, "--workers", "2",
                 "--no-progress"]) == 2  # some inputs failed
    captured = capsys.readouterr()
    assert "annotated 6 of 9 file(s)" in captured.out
    assert captured.err.strip().splitlines()[-1] == \
        f"midlevel: 3 of 9 input(s) failed; {tmp_path / 'two.errors.parquet'} lists them"
    assert two.read_bytes() == out.read_bytes()
    assert (tmp_path / "two.errors.parquet").read_bytes() == out.with_name("table.errors.parquet").read_bytes()


def test_globs_lists_and_csv_tables(library, local_table, tmp_path):
    reference = pd.read_parquet(local_table[0]).set_index("path")
    flac = sorted(str(library / n) for n in GOOD if n.endswith(".flac"))
    assert expand_inputs(str(library / "**" / "*.flac")) == flac + [str(library / "sub" / "text.flac")]
    with pytest.raises(AnnotateError, match="matches no file"):
        expand_inputs(str(library / "*.aiff"))
    # a CSV list (paths relative to it) and a Parquet list ('path' column); the same file twice is kept once
    pd.DataFrame({"file": ["a.wav", "sub/d.wav", "a.wav", "missing.wav"]}).to_csv(library / "list.csv", index=False)
    pd.DataFrame({"path": [str(library / "c.ogg")]}).to_parquet(tmp_path / "list.parquet")
    try:
        out = tmp_path / "listed.csv"
        summary = annotate([library / "list.csv", tmp_path / "list.parquet"], out, model=MODEL, progress=False)
    finally:
        (library / "list.csv").unlink()
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table["path"]) == [os.path.join(library, "a.wav"), os.path.join(library, "sub/d.wav"),
                                   str(library / "c.ogg")]
    for _, row in table.iterrows():  # a CSV keeps every digit
        expected = reference.loc[os.path.normpath(row["path"])]
        assert all(row[c] == expected[c] for c in table.columns if c.startswith(("concept.", "contrib.", "target.")))
    errors = pd.read_csv(tmp_path / "listed.errors.csv")
    assert list(errors["path"]) == [os.path.join(library, "missing.wav")] and summary["failed"] == 1
    assert errors["reason"][0] == "no such file"


def test_a_killed_run_resumes_to_the_same_bytes(library, tmp_path):
    # two short files, then long ones: the kill lands while a long one is being read
    for i in range(3):
        sf.write(tmp_path / f"long{i}.wav", clip(90, 10 + i), SR)
    inputs = [str(library / GOOD[0]), str(library / "empty.wav"), *(str(tmp_path / f"long{i}.wav") for i in range(3)),
              str(library / GOOD[1])]
    whole = tmp_path / "whole.parquet"
    annotate(inputs, whole, model=MODEL, progress=False)

    out = tmp_path / "resumed.parquet"
    parts = Path(f"{out}.parts")
    code = textwrap.dedent(f"""
        from midlevel.annotate import annotate
        annotate({inputs!r}, {str(out)!r}, model={MODEL!r}, part_rows=1, progress=False)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(parts.glob("part-*.jsonl"))) < 2:
        assert child.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not out.exists()
    written = [json.loads(line) for part in sorted(parts.glob("part-*.jsonl")) for line in part.read_text().splitlines()]
    assert 2 <= len(written) < len(inputs)  # whole records only, and not all of them

    summary = annotate(inputs, out, model=MODEL, progress=False)
    assert summary["resumed"] == len(written) and summary["annotated"] == 5 and summary["failed"] == 1
    assert out.read_bytes() == whole.read_bytes()
    assert out.with_name("resumed.errors.parquet").read_bytes() == whole.with_name("whole.errors.parquet").read_bytes()
    assert not parts.exists()


def test_parts_of_another_model_or_a_second_run_are_refused(library, tmp_path):
    out = tmp_path / "t.parquet"
    with PartStore(out, "some-other-model", "0" * 64):
        with pytest.raises(AnnotateError, match="another annotate run"):
            with PartStore(out, "some-other-model", "0" * 64):
                pass
    with pytest.raises(AnnotateError, match="unfinished run of some-other-model"):
        annotate(library / GOOD[0], out, model=MODEL, progress=False)
    with pytest.raises(AnnotateError, match="suffix"):
        annotate(library, tmp_path / "t.json", model=MODEL)


def test_the_ray_engine_writes_the_same_bytes(library, local_table, tmp_path):
    ray = pytest.importorskip("ray", reason="the 'ray' extra is not installed")
    out, _ = local_table
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = annotate(library, tmp_path / "ray.parquet", model=MODEL, workers=2, engine="ray", progress=False)
    finally:
        ray.shutdown()
    assert summary["engine"] == "ray" and summary["workers"] == 2
    assert (tmp_path / "ray.parquet").read_bytes() == out.read_bytes()
    assert (tmp_path / "ray.errors.parquet").read_bytes() == out.with_name("table.errors.parquet").read_bytes()


def test_uris_are_read_through_pyarrow_filesystems(library, local_table, tmp_path):
    """``file://`` stands in for ``s3://``: the same pyarrow code lists the folder and copies each file."""
    out = tmp_path / "uri.parquet"
    summary = annotate(f"file://{library}/", out, model=MODEL, progress=False)
    table, reference = pd.read_parquet(out), pd.read_parquet(local_table[0])
    assert list(table["path"]) == [f"file://{p}" for p in reference["path"]] and summary["failed"] == len(BAD)
    pd.testing.assert_frame_equal(table.drop(columns="path"), reference.drop(columns="path"), check_exact=True)
    reasons = pd.read_parquet(tmp_path / "uri.errors.parquet").set_index("path")["reason"]
    assert reasons[f"file://{library}/empty.wav"] == "file is empty (0 bytes)"  # no temporary name in it


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the workers through Linux's /proc")
def test_a_worker_killed_mid_run_costs_no_row(library, local_table, tmp_path):
    """The kernel's out-of-memory killer takes a worker: the files in flight are read again, each by a worker
    of its own, a new pool goes on, and the table is byte-identical to an undisturbed run."""
    import threading

    out, _ = local_table
    table = tmp_path / "killed.parquet"
    parts, killed = Path(f"{table}.parts"), []

    def kill_a_worker():  # once the first row is safely written, as the workers are reading the next files
        deadline = time.time() + 120
        while time.time() < deadline and not list(parts.glob("part-*")):
            time.sleep(0.005)
        workers = [pid for pid in children(os.getpid())
                   if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")]
        if workers:
            os.kill(workers[0], signal.SIGKILL)
            killed.append(workers[0])

    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    summary = annotate(library, table, model=MODEL, workers=2, progress=False, part_rows=1)
    killer.join()
    assert killed, "no worker was running to kill"
    assert summary["annotated"] == 6 and summary["failed"] == 3
    assert table.read_bytes() == out.read_bytes()
    assert table.with_name("killed.errors.parquet").read_bytes() == out.with_name("table.errors.parquet").read_bytes()


def test_a_pool_that_broke_between_files_is_replaced(library, local_table, tmp_path, monkeypatch):
    """A worker can die after the last finished file and before the next is sent (CI's flake of stop 44):
    the pool then refuses ``submit``. The run starts a new pool and loses no row."""
    import concurrent.futures.process
    from midlevel import annotate as module

    out, _ = local_table
    table, spawned = tmp_path / "between.parquet", []
    real_spawn = module._spawn_pool

    def spawn_then_break_the_first(*args):  # a real pool, whose worker really dies before any file is sent
        pool = real_spawn(*args)
        if not spawned:
            with pytest.raises(concurrent.futures.process.BrokenProcessPool):
                pool.submit(os._exit, 1).result(timeout=120)
        spawned.append(pool)
        return pool

    monkeypatch.setattr(module, "_spawn_pool", spawn_then_break_the_first)
    summary = annotate(library, table, model=MODEL, workers=2, progress=False, part_rows=1)
    assert len(spawned) == 2 and summary["annotated"] == 6 and summary["failed"] == 3
    assert table.read_bytes() == out.read_bytes()
