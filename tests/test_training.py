from dataclasses import replace

import numpy as np
import pytest
import torch

from midlevel import ModelConfig, TwoStageModel
from midlevel.model import BlackBoxModel
from midlevel.training.loops import ArraySet, TrainSettings, batched_outputs, network_outputs, train_network
from midlevel.training.metrics import mean_r, metric_table, paired_bootstrap_mean_r, pearson_per_column


def toy_set(n, seed):
    """Spectrograms whose band energies carry the concepts: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    concepts = rng.uniform(1, 10, size=(n, 7))
    spec = rng.normal(0, 0.1, size=(n, 149, 48)).astype(np.float32)
    for k in range(7):
        spec[:, 10 + 20 * k: 18 + 20 * k, :] += (concepts[:, k, None, None] - 5.5) / 4.5
    weights = np.random.default_rng(99).normal(0, 0.3, size=(7, 8))  # the same for every split
    targets = 5 + (concepts - 5.5) @ weights
    return ArraySet(torch.from_numpy(spec).half(), concepts, targets)


def small_model(kind="two_stage", head="linear"):
    torch.manual_seed(0)
    cfg = ModelConfig(kind=kind, head=head)
    return (TwoStageModel if kind == "two_stage" else BlackBoxModel)(cfg)


def test_metrics_match_numpy_and_sklearn():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    r = pearson_per_column(a, b)
    np.testing.assert_allclose(r, [np.corrcoef(a[:, j], b[:, j])[0, 1] for j in range(3)], atol=1e-12)
    table = metric_table(a, a * 2 + 1, ["x", "y", "z"])
    assert table["mean"]["r"] == pytest.approx(1.0) and table["x"]["r2"] < 0


def test_mean_r_counts_constant_prediction_as_zero():
    rng = np.random.default_rng(2)
    y = rng.normal(size=(40, 2))
    pred = np.column_stack([y[:, 0], np.ones(40)])
    assert mean_r(y, pred) == pytest.approx(0.5)


def test_paired_bootstrap_sees_a_real_gap_and_groups_widen_the_interval():
    rng = np.random.default_rng(3)
    pieces = np.repeat(np.arange(30), 4)
    y = rng.normal(size=(120, 3))
    piece_error = rng.normal(size=(30, 3))[pieces]  # clips of one piece share most of their error
    good = y + 0.5 * piece_error + 0.1 * rng.normal(size=y.shape)
    bad = y + 1.5 * piece_error + 0.1 * rng.normal(size=y.shape)
    low, high = paired_bootstrap_mean_r(y, good, bad, n=500)
    assert 0 < low < mean_r(y, good) - mean_r(y, bad) < high
    g_low, g_high = paired_bootstrap_mean_r(y, good, bad, groups=pieces, n=500)
    assert g_high - g_low > high - low
    same = paired_bootstrap_mean_r(y, good, good, n=100)
    assert same == [0.0, 0.0]


@pytest.mark.parametrize("setup,kind", [("concepts", "two_stage"), ("joint", "two_stage"), ("a2e", "black_box")])
def test_each_setup_learns(tmp_path, setup, kind):
    train, valid = toy_set(64, 0), toy_set(32, 1)
    model = small_model(kind)
    if setup == "joint":  # as the recipe does: start the head from a fit on the true concepts
        model.head.fit(train.concepts, train.targets)
    settings = TrainSettings(setup=setup, epochs=6, batch_size=16, lr=3e-3, patience=10)
    state = train_network(model, train, valid, settings, tmp_path, progress=False)
    hist = state["history"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert max(h["score"] for h in hist) > 0.5
    assert (tmp_path / "best" / "model.safetensors").is_file()
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == len(hist)


@pytest.mark.parametrize("transpose", [0, 2])
def test_interrupted_run_resumes_to_identical_weights(tmp_path, transpose):
    train, valid = toy_set(48, 0), toy_set(16, 1)
    full = small_model()
    settings = TrainSettings(setup="joint", epochs=4, batch_size=16, lr=3e-3, patience=10, seed=3,
                             transpose_semitones=transpose)
    train_network(full, train, valid, settings, tmp_path / "full", progress=False)

    part = small_model()
    train_network(part, train, valid, TrainSettings(**{**settings.__dict__, "epochs": 2}),
                  tmp_path / "part", progress=False)
    resumed = small_model()  # a 2-epoch run extended to 4 is the same as a 4-epoch run killed after 2
    train_network(resumed, train, valid, settings, tmp_path / "part", progress=False)
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    np.testing.assert_array_equal(network_outputs(full, valid), network_outputs(resumed, valid))


def test_resuming_with_other_settings_is_refused(tmp_path):
    train, valid = toy_set(16, 0), toy_set(16, 1)
    train_network(small_model(), train, valid, TrainSettings(epochs=1), tmp_path, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        train_network(small_model(), train, valid, TrainSettings(epochs=1, lr=0.1), tmp_path, progress=False)


def test_a_run_from_before_a_setting_existed_resumes_with_its_default(tmp_path):
    import json

    train, valid = toy_set(16, 0), toy_set(16, 1)
    train_network(small_model(), train, valid, TrainSettings(epochs=1), tmp_path, progress=False)
    state_file = tmp_path / "state.json"
    state = json.loads(state_file.read_text())
    del state["settings"]["transpose_semitones"]  # as written before the augmentation existed
    state_file.write_text(json.dumps(state))
    resumed = train_network(small_model(), train, valid, TrainSettings(epochs=2), tmp_path, progress=False)
    assert len(resumed["history"]) == 2
    with pytest.raises(ValueError, match="other settings"):
        train_network(small_model(), train, valid, TrainSettings(epochs=3, transpose_semitones=1), tmp_path,
                      progress=False)


def test_transposed_training_differs_from_plain_and_is_seeded(tmp_path):
    train, valid = toy_set(32, 0), toy_set(16, 1)
    runs = []
    for i, transpose in enumerate([0, 3, 3]):
        model = small_model()
        train_network(model, train, valid, TrainSettings(epochs=1, transpose_semitones=transpose),
                      tmp_path / str(i), progress=False)
        runs.append(network_outputs(model, valid))
    np.testing.assert_array_equal(runs[1], runs[2])
    assert np.abs(runs[0] - runs[1]).max() > 1e-3


def test_note_roll_loss_needs_rolls_and_a_transcribing_backbone(tmp_path):
    train, valid = toy_set(16, 0), toy_set(16, 1)
    settings = TrainSettings(epochs=1, roll_weight=1.0)
    with pytest.raises(ValueError, match="needs note rolls"):
        train_network(small_model(), train, valid, settings, tmp_path / "a", progress=False)
    train.rolls = torch.zeros(16, 2, 84, 48, dtype=torch.uint8)
    with pytest.raises(ValueError, match="transcribing backbone.*'compact'"):
        train_network(small_model(), train, valid, settings, tmp_path / "b", progress=False)
    with pytest.raises(ValueError, match="cannot be combined"):
        TrainSettings(roll_weight=1.0, transpose_semitones=2)
    with pytest.raises(ValueError, match="roll_weight must be >= 0"):
        TrainSettings(roll_weight=-1.0)


def test_roll_loss_changes_training_only_when_weighted(tmp_path):
    """roll_weight 0 leaves a transcribing model's run bit-identical whether or not rolls are given;
    a positive weight trains the transcriber (its weights move) and changes the concept layer's path."""
    train, valid = toy_set(32, 0), toy_set(16, 1)
    train.logspec, valid.logspec = train.logspec.repeat(1, 1, 3), valid.logspec.repeat(1, 1, 3)  # the pitch
    rng = np.random.default_rng(0)  # features pool over 104 frames
    rolls = torch.from_numpy((rng.random((32, 2, 84, 144)) < 0.05).astype(np.uint8))

    def run(weight, rolls, folder):
        torch.manual_seed(0)
        model = TwoStageModel(ModelConfig(backbone="compact_transcribe"))
        data = ArraySet(train.logspec, train.concepts, train.targets, rolls)
        train_network(model, data, valid, TrainSettings(setup="concepts", epochs=1, roll_weight=weight),
                      tmp_path / folder, progress=False)
        return model

    plain, ignored, weighted = run(0.0, None, "a"), run(0.0, rolls, "b"), run(1.0, rolls, "c")
    for (name, a), b in zip(plain.state_dict().items(), ignored.state_dict().values()):
        assert torch.equal(a, b), name
    moved = plain.backbone.salience.net[-1].weight - weighted.backbone.salience.net[-1].weight
    assert moved.abs().max() > 1e-4


def test_training_flushes_denormals_and_restores_the_previous_setting():
    """Denormal floats slow x86 arithmetic many times over; training computes with them flushed to zero."""
    from midlevel.training.loops import flush_denormals

    tiny = torch.tensor([1e-40], dtype=torch.float32)  # below float32's smallest normal number
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormals")
    assert (tiny * 1.0).item() != 0.0
    with flush_denormals():
        assert (tiny * 1.0).item() == 0.0
    assert (tiny * 1.0).item() != 0.0
    torch.set_flush_denormal(True)  # as the midlevel command sets it: training leaves it on
    try:
        with flush_denormals():
            assert (tiny * 1.0).item() == 0.0
        assert (tiny * 1.0).item() == 0.0
    finally:
        torch.set_flush_denormal(False)


def with_hidden_ingredient(data: ArraySet, seed: int) -> ArraySet:
    """The set plus one 'ingredient' that bands 140-148 carry and no concept or target depends on."""
    rng = np.random.default_rng(seed + 50)
    hidden = rng.uniform(-1, 1, size=len(data))
    spec = data.logspec.float().clone()
    spec[:, 140:149, :] += torch.from_numpy(hidden[:, None, None]).float()
    return ArraySet(spec.half(), data.concepts, data.targets, ingredients=np.c_[hidden, 2 * hidden + 1])


def embedding_probe_r(model: TwoStageModel, train: ArraySet, valid: ArraySet) -> float:
    """Validation r of a least-squares read-out of the hidden ingredient from the model's embedding."""
    from midlevel.training.loops import batched_outputs

    def embed(data):
        return batched_outputs(model, data, model.backbone)

    x_train, x_valid = embed(train), embed(valid)
    design = np.c_[x_train, np.ones(len(x_train))]
    coef = np.linalg.lstsq(design, train.ingredients[:, 0], rcond=None)[0]
    return float(np.corrcoef(np.c_[x_valid, np.ones(len(x_valid))] @ coef, valid.ingredients[:, 0])[0, 1])


def test_ingredient_loss_teaches_the_embedding_and_is_not_saved_with_the_model(tmp_path):
    train, valid = with_hidden_ingredient(toy_set(64, 0), 0), with_hidden_ingredient(toy_set(48, 1), 1)
    runs = {}
    for name, weight in (("plain", 0.0), ("taught", 1.0)):
        model = small_model()
        train_network(model, train, valid, TrainSettings(setup="concepts", epochs=6, lr=3e-3, patience=10,
                                                         ingredient_weight=weight), tmp_path / name, progress=False)
        runs[name] = model
    assert embedding_probe_r(runs["taught"], train, valid) > embedding_probe_r(runs["plain"], train, valid) + 0.05
    # the read-out lives in the training state only: the model is a model like any other
    assert runs["taught"].state_dict().keys() == runs["plain"].state_dict().keys()
    reloaded = TwoStageModel.from_pretrained(tmp_path / "taught" / "best")
    assert reloaded.state_dict().keys() == runs["plain"].state_dict().keys()


def test_ingredient_loss_is_off_at_weight_zero_resumes_exactly_and_needs_ingredients(tmp_path):
    train, valid = with_hidden_ingredient(toy_set(32, 0), 0), toy_set(16, 1)
    plain, ignored = small_model(), small_model()
    train_network(plain, ArraySet(train.logspec, train.concepts, train.targets), valid, TrainSettings(epochs=1),
                  tmp_path / "plain", progress=False)
    train_network(ignored, train, valid, TrainSettings(epochs=1), tmp_path / "ignored", progress=False)
    for (name, a), b in zip(plain.state_dict().items(), ignored.state_dict().values()):
        assert torch.equal(a, b), name

    settings = TrainSettings(setup="joint", epochs=3, lr=3e-3, patience=10, seed=2, ingredient_weight=0.5)
    full = small_model()
    train_network(full, train, valid, settings, tmp_path / "full", progress=False)
    part = small_model()
    train_network(part, train, valid, TrainSettings(**{**settings.__dict__, "epochs": 1}), tmp_path / "part",
                  progress=False)
    resumed = small_model()  # the read-out's weights and moments come back from the training state too
    train_network(resumed, train, valid, settings, tmp_path / "part", progress=False)
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name

    with pytest.raises(ValueError, match="needs the ratings' ingredients"):
        train_network(small_model(), ArraySet(train.logspec, train.concepts, train.targets), valid, settings,
                      tmp_path / "none", progress=False)
    with pytest.raises(ValueError, match="ingredient_weight must be >= 0"):
        TrainSettings(ingredient_weight=-1.0)


def test_trainable_freezes_the_rest_in_eval_mode_and_resumes(tmp_path):
    """Only the named parameters move; frozen batch norms keep their statistics; the frozen part's
    outputs are unchanged; a run with the setting resumes; an unknown prefix is refused."""
    train, valid = toy_set(48, 0), toy_set(16, 1)
    model, start = small_model(), small_model()
    settings = TrainSettings(setup="joint", epochs=2, batch_size=16, lr=3e-3, patience=10, trainable=("concept_layer",))
    train_network(model, train, valid, settings, tmp_path / "run", progress=False)
    moved = {n for (n, a), b in zip(model.state_dict().items(), start.state_dict().values()) if not torch.equal(a, b)}
    assert moved and all(n.startswith("concept_layer.") for n in moved)  # batch-norm statistics included
    assert all(p.requires_grad for p in model.parameters())  # frozen only while training
    np.testing.assert_array_equal(batched_outputs(model, valid, model.backbone),
                                  batched_outputs(start, valid, start.backbone))  # the embedding did not drift
    everything = small_model()
    train_network(everything, train, valid, TrainSettings(**{**settings.__dict__, "trainable": ()}),
                  tmp_path / "all", progress=False)
    assert any(not torch.equal(a, b) for (n, a), b in zip(everything.state_dict().items(), start.state_dict().values())
               if n.startswith("backbone."))
    extended = small_model()  # the finished 2-epoch run extended to 3: the stored tuple compares equal
    train_network(extended, train, valid, TrainSettings(**{**settings.__dict__, "epochs": 3}), tmp_path / "run",
                  progress=False)
    with pytest.raises(ValueError, match="no parameter of this model starts with"):
        train_network(small_model(), train, valid, TrainSettings(epochs=1, trainable=("concepts_layer",)),
                      tmp_path / "typo", progress=False)


def test_a_crop_labels_timed_concepts_by_whether_it_overlaps_where_they_were_heard():
    from midlevel.training.loops import SPAN_MIN_FRAMES, timed_labels

    concepts = torch.tensor([[1.0, 1.0, 0.7], [0.0, 1.0, 0.2]])
    spans = np.array([[[10, 20], [40, 60], [np.nan, np.nan]],   # heard at frames 10-20 and 40-60; untimed
                      [[-30, -30], [0, 5], [np.nan, np.nan]]])  # never heard; heard at 0-5
    out = timed_labels(concepts, spans, offset=15, length=30, scale=(0.0, 1.0)).numpy()
    # crop 15-45: overlaps 10-20 by 5 frames, 40-60 by 5, 0-5 by none; the untimed column keeps its label
    np.testing.assert_allclose(out, [[1.0, 1.0, 0.7], [0.0, 0.0, 0.2]], rtol=1e-6)
    edge = timed_labels(concepts, spans, offset=20 - SPAN_MIN_FRAMES + 1, length=10, scale=(1.0, 10.0)).numpy()
    assert edge[0, 0] == 1.0  # SPAN_MIN_FRAMES - 1 frames of overlap are not enough: the bottom of the scale


def test_training_on_crops_reads_the_spans_of_timed_concepts(tmp_path):
    train, valid = toy_set(32, 0), toy_set(8, 1)
    settings = TrainSettings(setup="concepts", epochs=1, batch_size=16, crop_frames=24, seed=1)
    plain, timed = small_model(), small_model()
    train_network(plain, train, valid, settings, tmp_path / "plain", progress=False)
    spans = np.full((32, 7, 2), np.nan)
    spans[:, 0] = [-10, -5]  # the first concept is never heard in any crop: its labels become the scale's bottom
    train_network(timed, replace(train, spans=spans), valid, settings, tmp_path / "timed", progress=False)
    assert not torch.equal(plain.concept_layer.bias, timed.concept_layer.bias)
