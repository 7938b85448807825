"""The stacked step (``train.stacked.StackedTrainer``): eager on the CPU, where its numerics are tested
against each run trained alone (the per-model engine); the CUDA-graph tests run only where CUDA is."""

import copy

import pytest
import torch

from ddd_support.train.stacked import StackedTrainer
from ddd_support.models import model_from_config
from ddd_support.train.driver import batch_order
from ddd_support.train.optim import run_state_dict
from ddd_support.train.prepare import prepare_data
from ddd_support.train.schedule import lr_at

from tests.conftest import epochs_alone, tiny_config

CPU = torch.device("cpu")
TOL = dict(rtol=1e-5, atol=1e-6)


def setup(synthetic_arrays, cfgs, device=CPU):
    data = [prepare_data(c, synthetic_arrays, device) for c in cfgs]
    ys = torch.stack([d.y_noisy for d in data])
    return data, data[0].x_train, ys


def separate_runs(cfgs, data, epochs, batch_size, device=CPU, schedule=False):
    """Each config trained alone (the per-model engine): (models, per-epoch losses)."""
    models, losses = [], []
    for cfg, d in zip(cfgs, data):
        model = model_from_config(cfg).to(device)
        orders = [batch_order(len(d.x_train), cfg.resolved_order_seed, epoch) for epoch in range(1, epochs + 1)]
        losses.append(epochs_alone(model, cfg, d.x_train, d.y_noisy, orders, schedule, batch_size=batch_size))
        models.append(model)
    return models, losses


def stacked_runs(cfgs, x, ys, epochs, batch_size, device=CPU, graphs=None, schedule=False):
    models = [model_from_config(c).to(device) for c in cfgs]
    trainer = StackedTrainer(models, device, [c.lr for c in cfgs], [c.weight_decay for c in cfgs], graphs=graphs)
    losses = []
    for epoch in range(1, epochs + 1):
        if schedule:
            trainer.set_lrs([lr_at(c, epoch) for c in cfgs])
        orders = torch.stack([batch_order(len(x), c.resolved_order_seed, epoch) for c in cfgs])
        losses.append(trainer.train_epoch(x, ys, orders, batch_size))
    return models, [list(col) for col in zip(*losses)], trainer


def assert_models_close(ours, theirs, **tol):
    for a, b in zip(ours, theirs):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
            torch.testing.assert_close(p, q, **(tol or TOL), msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("batch_size", [32, 30, 512])  # 300 samples: remainder 12, none, only a partial batch
def test_stacked_seeds_match_separate_runs_including_the_last_partial_batch(synthetic_arrays, batch_size):
    cfgs = [tiny_config(seed=s, batch_size=batch_size) for s in (0, 1, 2)]
    data, x, ys = setup(synthetic_arrays, cfgs)
    ours, our_losses, _ = stacked_runs(cfgs, x, ys, epochs=2, batch_size=batch_size)
    theirs, their_losses = separate_runs(cfgs, data, epochs=2, batch_size=batch_size)
    assert_models_close(ours, theirs)
    for a, b in zip(our_losses, their_losses):
        assert a == pytest.approx(b, rel=1e-5)


def test_each_model_trains_with_its_own_learning_rate_and_weight_decay(synthetic_arrays):
    cfgs = [tiny_config(seed=0), tiny_config(seed=0, lr=4e-3), tiny_config(seed=0, lr=2e-4, weight_decay=0.1)]
    data, x, ys = setup(synthetic_arrays, cfgs)
    ours, _, _ = stacked_runs(cfgs, x, ys, epochs=2, batch_size=32)
    theirs, _ = separate_runs(cfgs, data, epochs=2, batch_size=32)
    assert_models_close(ours, theirs)
    first = ours[0].state_dict()["linears.0.weight"]
    assert all(not torch.allclose(first, m.state_dict()["linears.0.weight"]) for m in ours[1:])


def test_stacked_configs_may_differ_in_noise_rate(synthetic_arrays):
    cfgs = [tiny_config(seed=0, noise_rate=0.0), tiny_config(seed=0, noise_rate=0.4)]
    data, x, ys = setup(synthetic_arrays, cfgs)
    assert not torch.equal(ys[0], ys[1])
    ours, _, _ = stacked_runs(cfgs, x, ys, epochs=1, batch_size=32)
    theirs, _ = separate_runs(cfgs, data, epochs=1, batch_size=32)
    assert_models_close(ours, theirs)


def test_a_schedule_set_between_epochs_matches_set_lr_on_separate_runs(synthetic_arrays):
    cfgs = [tiny_config(seed=s, lr=3e-3, epochs=3, lr_schedule="cosine") for s in (0, 1)]
    data, x, ys = setup(synthetic_arrays, cfgs)
    ours, _, trainer = stacked_runs(cfgs, x, ys, epochs=3, batch_size=32, schedule=True)
    theirs, _ = separate_runs(cfgs, data, epochs=3, batch_size=32, schedule=True)
    assert_models_close(ours, theirs)
    assert trainer.lr(0) == pytest.approx(lr_at(cfgs[0], 3))


def test_each_models_parameters_are_views_of_the_stacked_weights(synthetic_arrays):
    cfgs = [tiny_config(seed=s) for s in (0, 1)]
    _, x, ys = setup(synthetic_arrays, cfgs)
    models, _, trainer = stacked_runs(cfgs, x, ys, epochs=1, batch_size=32)
    with torch.no_grad():
        logits = trainer.forward(x[:5].expand(2, -1, -1))
        for j, model in enumerate(models):
            torch.testing.assert_close(logits[j], model(x[:5]), **TOL)
            assert model.linears[0].weight.data_ptr() == trainer.stacked[0][j].data_ptr()


def test_optimizer_state_continues_in_an_ordinary_run_and_in_a_new_stacked_one(synthetic_arrays):
    cfgs = [tiny_config(seed=s) for s in (0, 1)]
    data, x, ys = setup(synthetic_arrays, cfgs)
    ours, _, trainer = stacked_runs(cfgs, x, ys, epochs=1, batch_size=32)
    saved = [{"model": {k: v.clone() for k, v in m.state_dict().items()},
              "optimizer": run_state_dict(trainer.opt, j, trainer.params[j])} for j, m in enumerate(ours)]
    assert saved[0]["optimizer"]["param_groups"][0]["capturable"] is False
    orders = torch.stack([batch_order(len(x), c.resolved_order_seed, 2) for c in cfgs])
    trainer.train_epoch(x, ys, orders, 32)  # the uninterrupted stacked run's epoch 2
    resumed = []
    for j, (cfg, d) in enumerate(zip(cfgs, data)):  # epoch 2 in an ordinary run from the checkpoint
        model = model_from_config(cfg)
        model.load_state_dict(saved[j]["model"])
        epochs_alone(model, cfg, d.x_train, d.y_noisy, [orders[j]], first_epoch=2,
                     optimizer_state=copy.deepcopy(saved[j]["optimizer"]["state"]), batch_size=32)
        resumed.append(model)
    assert_models_close(ours, resumed)
    models = [model_from_config(c) for c in cfgs]  # and in a new stacked trainer
    for m, s in zip(models, saved):
        m.load_state_dict(s["model"])
    again = StackedTrainer(models, CPU, [c.lr for c in cfgs],
                           optimizer_states=[s["optimizer"]["state"] for s in saved])
    again.train_epoch(x, ys, orders, 32)
    assert_models_close(ours, models)


def test_cuda_graphs_are_refused_off_cuda_and_off_by_default_there():
    models = [model_from_config(tiny_config(seed=s)) for s in (0, 1)]
    with pytest.raises(ValueError, match="CUDA"):
        StackedTrainer(models, CPU, [1e-3, 1e-3], graphs=True)
    assert StackedTrainer(models, CPU, [1e-3, 1e-3]).graphs is False


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_steps_agree_with_eager_steps_and_separate_runs(synthetic_arrays):
    cuda = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    cfgs = [tiny_config(seed=s, device="cuda", lr=1e-3 * (s + 1), lr_schedule="cosine", epochs=3) for s in (0, 1, 2)]
    data, x, ys = setup(synthetic_arrays, cfgs, cuda)
    graph, graph_losses, trainer = stacked_runs(cfgs, x, ys, 3, 32, cuda, graphs=True, schedule=True)
    assert trainer.graphs and sorted(trainer._captured) == [12, 32]
    eager, eager_losses, _ = stacked_runs(cfgs, x, ys, 3, 32, cuda, graphs=False, schedule=True)
    separate, separate_losses = separate_runs(cfgs, data, 3, 32, cuda, schedule=True)
    for ours, theirs in ((graph, eager), (graph, separate)):  # relative L2: a near-zero gradient may
        for a, b in zip(ours, theirs):                          # flip one Adam step's sign
            diff = sum(((p - q) ** 2).sum() for p, q in zip(a.parameters(), b.parameters()))
            norm = sum((q ** 2).sum() for q in b.parameters())
            assert (diff / norm).sqrt().item() < 1e-5
    for a, b, c in zip(graph_losses, eager_losses, separate_losses):
        assert a == pytest.approx(b, rel=1e-4) and a == pytest.approx(c, rel=1e-4)
