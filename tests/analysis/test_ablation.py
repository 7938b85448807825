"""Neuron ablation on a tiny model whose whole decision runs through one planted neuron."""

from pathlib import Path

import numpy as np
import pytest
import torch

from ddd_support.analysis.ablation import ablate_neuron, ablation_table, neuron_fixed
from ddd_support.config import TrainConfig
from ddd_support.data.cifar import CifarArrays
from ddd_support.errors import RunDirError
from ddd_support.models import MLP
from ddd_support.runs.checkpoints import save_checkpoint
from ddd_support.train.driver import PreparedData, prepare_data, train

WIDTHS = (8, 8)
PLANTED = 3          # the neuron that carries all the information, in both hidden layers


def brightness_arrays(n_train: int = 300, n_test: int = 100, seed: int = 0) -> CifarArrays:
    """Images whose class is their brightness: class c has pixels near 20 + 22 c."""
    rng = np.random.default_rng(seed)

    def images(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % 10
        x = 20 + 22 * y[:, None, None, None] + rng.integers(-4, 5, size=(n, 32, 32, 3))
        return x.astype(np.uint8), y.astype(np.int64)

    (xtr, ytr), (xte, yte) = images(n_train), images(n_test)
    return CifarArrays(xtr, ytr, xte, yte, source="synthetic")


CONFIG = TrainConfig(profile="test", model="mlp3", hidden_widths=WIDTHS, epochs=1, batch_size=100,
                     lr=1e-3, probe_per_class=2, top_k=2, snapshot_dense_until=1, progress=False,
                     device="cpu")


@torch.no_grad()
def planted_model(data: PreparedData) -> MLP:
    """Layer 1 neuron 3 = mean input + 3 (the brightness), copied by layer 2 neuron 3, read by a
    nearest-class-centre head; every other weight is zero, so every other neuron is silent."""
    model = MLP(WIDTHS)
    for p in model.parameters():
        p.zero_()
    model.linears[0].weight[PLANTED] = 1.0 / data.x_train.shape[1]
    model.linears[0].bias[PLANTED] = 3.0
    model.linears[1].weight[PLANTED, PLANTED] = 1.0
    feature = data.x_train.mean(dim=1) + 3.0
    centres = torch.stack([feature[data.y_true == c].mean() for c in range(10)])
    model.head.weight[:, PLANTED] = centres
    model.head.bias[:] = -centres ** 2 / 2
    return model.eval()


@pytest.fixture(scope="module")
def data() -> PreparedData:
    return prepare_data(CONFIG, brightness_arrays(), torch.device("cpu"))


@pytest.fixture(scope="module")
def model(data) -> MLP:
    return planted_model(data)


def test_planted_model_classifies_by_true_class(model, data):
    base = ablation_table(model, data, layer=1, neuron=PLANTED, n_random=0).iloc[0]
    assert base["label"] == "baseline"
    assert base["test_acc"] == 1.0 and base["clean_acc"] == 1.0 and base["noisy_true_acc"] == 1.0
    assert base["noisy_acc"] == 0.0


def test_zeroing_the_planted_neuron_drops_accuracy_to_chance(model, data):
    table = ablation_table(model, data, layer=1, neuron=PLANTED).set_index("label")
    assert table.loc["large neuron", "test_acc"] == pytest.approx(0.1, abs=0.05)
    assert table.loc["large neuron", "d_test_acc"] < -0.8


def test_zeroing_random_neurons_changes_nothing(model, data):
    table = ablation_table(model, data, layer=1, neuron=PLANTED, n_random=5)
    random_rows = table[table["label"].str.startswith("random neuron")]
    assert len(random_rows) == 5
    assert PLANTED not in set(random_rows["neuron"])
    assert (random_rows["d_test_acc"] == 0).all() and (random_rows["d_clean_loss"] == 0).all()


def test_mean_ablation_removes_the_information_too(model, data):
    table = ablation_table(model, data, layer=2, neuron=PLANTED, mode="mean").set_index("label")
    assert table.loc["large neuron", "value"] == pytest.approx(3.0, abs=0.05)  # mean input ~0, bias 3
    assert table.loc["large neuron", "test_acc"] < 0.3


def test_random_neurons_are_drawn_reproducibly_from_the_seed(model, data):
    first = ablation_table(model, data, 1, PLANTED, n_random=3, seed=4)["neuron"].tolist()
    assert first == ablation_table(model, data, 1, PLANTED, n_random=3, seed=4)["neuron"].tolist()


def test_random_neurons_are_capped_at_the_rest_of_the_layer(model, data):
    table = ablation_table(model, data, 1, PLANTED, n_random=50)
    assert len(table) == 2 + WIDTHS[0] - 1


def test_hook_is_removed_after_the_ablation(model, data):
    before = model(data.x_test)
    with neuron_fixed(model, 1, PLANTED, 0.0):
        assert not torch.equal(model(data.x_test), before)
    assert torch.equal(model(data.x_test), before)


def test_nonexistent_neuron_or_layer_is_rejected(model, data):
    with pytest.raises(ValueError, match="neuron 8 does not exist"):
        ablation_table(model, data, 1, 8)
    with pytest.raises(ValueError, match="layer must be"):
        with neuron_fixed(model, 3, 0, 0.0):
            pass


def test_unknown_mode_is_rejected(model, data):
    with pytest.raises(ValueError, match="mode must be"):
        ablation_table(model, data, 1, PLANTED, mode="noise")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data) -> Path:
    """A trained run whose newest checkpoint holds the planted weights."""
    run_dir = train(CONFIG, tmp_path_factory.mktemp("runs"), arrays=brightness_arrays())
    save_checkpoint(run_dir, {"model": planted_model(data).state_dict(), "optimizer": {}}, epoch=2)
    return run_dir


def test_ablate_neuron_loads_the_newest_checkpoint_and_rebuilds_the_data(run_dir):
    table = ablate_neuron(run_dir, layer=1, neuron=PLANTED, n_random=2, arrays=brightness_arrays(), device="cpu")
    assert list(table["label"]) == ["baseline", "large neuron", "random neuron 1", "random neuron 2"]
    assert (table["epoch"] == 2).all()
    assert table["test_acc"].iloc[0] == 1.0
    assert table["test_acc"].iloc[1] < 0.2
    assert (table["test_acc"].iloc[2:] == 1.0).all()


def test_ablate_neuron_defaults_to_the_most_frequent_top_neuron_at_the_checkpoint_epoch(tmp_path):
    from ddd_support.runs.reader import load_run

    run = load_run(train(CONFIG, tmp_path, arrays=brightness_arrays()))
    values, counts = np.unique(run.snapshot(CONFIG.epochs)["l2_img_argmax"], return_counts=True)
    table = ablate_neuron(run, layer=2, n_random=0, arrays=brightness_arrays())
    assert table["neuron"].iloc[1] == values[np.argmax(counts)] and (table["epoch"] == CONFIG.epochs).all()


def test_ablating_an_inert_neuron_has_no_effect(model, data):
    from ddd_support.analysis.ablation import ablation_summary
    from ddd_support.analysis.stats import RULED_OUT, Interval, verdict

    table = ablation_table(model, data, layer=1, neuron=0, n_random=4)   # neuron 0 has no weights
    summary = ablation_summary(table)
    assert summary["d_test_acc"] == 0.0 and summary["low"] == summary["high"] == 0.0
    assert summary["p_mcnemar"] == 1.0 and summary["percentile"] == 0.5   # ties with silent random neurons
    assert verdict(Interval(summary["d_test_acc"], summary["low"], summary["high"], 100), 0.01, side="below") == RULED_OUT


def test_silencing_the_planted_neuron_is_a_paired_drop_beyond_every_random_neuron(model, data):
    from ddd_support.analysis.ablation import ablation_summary

    table = ablation_table(model, data, layer=1, neuron=PLANTED, mode="zero", n_random=5)
    summary = ablation_summary(table)
    assert summary["high"] < -0.5 and summary["p_mcnemar"] < 1e-10 and summary["percentile"] == 1.0
    correct = table.attrs["test_correct"]
    assert correct.shape == (7, len(data.y_test)) and correct[0].all()
    assert table.loc[1, "right_to_wrong"] == int((~correct[1]).sum())


def test_stored_ablation_keeps_the_per_image_record_and_rederives_the_tests(model, data, tmp_path):
    from ddd_support.analysis.ablation import stored_ablation, write_stored_ablation

    table = ablation_table(model, data, layer=1, neuron=PLANTED, mode="zero", n_random=2)
    write_stored_ablation(table.drop(columns=["p_mcnemar"]), tmp_path)
    run = type("R", (), {"path": tmp_path})()
    again = stored_ablation(run)
    assert np.array_equal(again.attrs["test_correct"], table.attrs["test_correct"])
    assert np.allclose(again["p_mcnemar"], table["p_mcnemar"])


def test_ablate_neuron_without_a_snapshot_at_the_checkpoint_epoch_asks_for_the_neuron(run_dir):
    with pytest.raises(RunDirError, match="no snapshot at the checkpoint's epoch 2"):
        ablate_neuron(run_dir, layer=2, n_random=0, arrays=brightness_arrays())


def test_ablate_neuron_refuses_data_that_are_not_the_run_s_data(run_dir):
    with pytest.raises(RunDirError, match="do not rebuild the training set"):
        ablate_neuron(run_dir, layer=1, neuron=PLANTED, arrays=brightness_arrays(seed=0, n_train=400))

