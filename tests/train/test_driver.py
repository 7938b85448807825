import pandas as pd
import pytest
import torch

from ddd_support.errors import ConfigError
from ddd_support.models import model_from_config
from ddd_support.runs.checkpoints import load_checkpoint
from ddd_support.runs.schema import METRIC_COLUMNS, TIMING_COLUMNS
from ddd_support.train.driver import batch_order, train, train_runs
from ddd_support.train.engine import Engine
from ddd_support.train.prepare import prepare_data
from ddd_support.train.runner import parse_vary, variant_configs
from ddd_support.train.schedule import lr_at

from tests.conftest import epochs_alone, tiny_config

DETERMINISTIC = [c for c in METRIC_COLUMNS if c not in TIMING_COLUMNS]


def metrics(run_dir) -> pd.DataFrame:
    return pd.read_csv(run_dir / "metrics.csv")[DETERMINISTIC]


def test_batched_seeds_equal_separate_runs_bit_for_bit(tmp_path, synthetic_arrays):
    cfgs = [tiny_config(seed=s, epochs=3) for s in (0, 3)]
    batched = train_runs(cfgs, tmp_path / "b", synthetic_arrays)
    for cfg, run in zip(cfgs, batched):
        ref = train(cfg, tmp_path / "a", synthetic_arrays)
        assert run.relative_to(tmp_path / "b") == ref.relative_to(tmp_path / "a")
        pd.testing.assert_frame_equal(metrics(run), metrics(ref), check_exact=True)
        ours, theirs = load_checkpoint(run), load_checkpoint(ref)
        assert all(torch.equal(ours["model"][k], v) for k, v in theirs["model"].items())
        assert sorted(p.relative_to(run) for p in run.rglob("*") if p.is_file()) == \
            sorted(p.relative_to(ref) for p in ref.rglob("*") if p.is_file())


def test_seeds_differ_from_each_other(tmp_path, synthetic_arrays):
    runs = train_runs([tiny_config(seed=s, epochs=2) for s in (0, 1)], tmp_path, synthetic_arrays)
    assert not metrics(runs[0]).equals(metrics(runs[1]))


def test_a_batched_run_is_continued_by_train_to_the_same_result(tmp_path, synthetic_arrays):
    [run] = train_runs([tiny_config(seed=2, epochs=2)], tmp_path / "b", synthetic_arrays)
    extended = train(tiny_config(seed=2, epochs=3), tmp_path / "b", synthetic_arrays)
    reference = train(tiny_config(seed=2, epochs=3), tmp_path / "a", synthetic_arrays)
    assert extended == run
    pd.testing.assert_frame_equal(metrics(extended), metrics(reference), check_exact=True)


def test_stacked_gemms_match_separate_training_to_rounding(synthetic_arrays):
    cfgs = [tiny_config(seed=s) for s in (0, 1)]
    device = torch.device("cpu")
    data = [prepare_data(c, synthetic_arrays, device) for c in cfgs]
    models = [model_from_config(c) for c in cfgs]
    batch = Engine(models, cfgs, device, stacked=True)
    orders = torch.stack([batch_order(len(data[0].x_train), c.resolved_order_seed, 1) for c in cfgs])
    losses = batch.train_epoch(data[0].x_train, torch.stack([d.y_noisy for d in data]), orders,
                               cfgs[0].batch_size)
    for j, (cfg, d) in enumerate(zip(cfgs, data)):
        ref = model_from_config(cfg)
        [loss] = epochs_alone(ref, cfg, d.x_train, d.y_noisy, [orders[j]])
        assert losses[j] == pytest.approx(loss, abs=1e-5)
        for name, value in ref.state_dict().items():
            assert torch.allclose(models[j].state_dict()[name], value, atol=1e-5), name


def test_runs_that_differ_in_shape_or_loop_settings_are_refused(tmp_path, synthetic_arrays):
    with pytest.raises(ConfigError, match="batch_size"):
        train_runs([tiny_config(seed=0), tiny_config(seed=1, batch_size=16)], tmp_path, synthetic_arrays)
    with pytest.raises(ConfigError, match="base_width"):
        train_runs([tiny_config(seed=0), tiny_config(seed=1, base_width=8)], tmp_path, synthetic_arrays)
    with pytest.raises(ConfigError, match="once"):
        train_runs([tiny_config(seed=0), tiny_config(seed=0)], tmp_path, synthetic_arrays)


def test_runs_sharing_a_seed_need_their_own_output_roots(tmp_path, synthetic_arrays):
    with pytest.raises(ConfigError, match="output roots"):
        train_runs([tiny_config(seed=0), tiny_config(seed=0, lr=3e-3)], tmp_path, synthetic_arrays)


def test_runs_differing_in_lr_and_noise_rate_equal_separate_runs_bit_for_bit(tmp_path, synthetic_arrays):
    cfgs = [tiny_config(seed=0, epochs=2), tiny_config(seed=0, epochs=2, lr=3e-3, noise_rate=0.1),
            tiny_config(seed=1, epochs=2, weight_decay=1e-2)]
    outs = [tmp_path / "b" / name for name in ("base", "lr_noise", "wd")]
    batched = train_runs(cfgs, outs, synthetic_arrays)
    for cfg, run, name in zip(cfgs, batched, ("base", "lr_noise", "wd")):
        ref = train(cfg, tmp_path / "a" / name, synthetic_arrays)
        pd.testing.assert_frame_equal(metrics(run), metrics(ref), check_exact=True)
        ours, theirs = load_checkpoint(run), load_checkpoint(ref)
        assert all(torch.equal(ours["model"][k], v) for k, v in theirs["model"].items())
        assert ours["optimizer"]["param_groups"][0]["lr"] == cfg.lr


def test_a_cosine_schedule_gives_each_epoch_its_rate(tmp_path, synthetic_arrays):
    cfg = tiny_config(seed=1, epochs=3, lr=3e-3, lr_schedule="cosine")
    [run] = train_runs([cfg, tiny_config(seed=2, epochs=3, lr=3e-3, lr_schedule="cosine")], tmp_path,
                        synthetic_arrays)[:1]
    d = prepare_data(cfg, synthetic_arrays, torch.device("cpu"))
    model = model_from_config(cfg)
    epochs_alone(model, cfg, d.x_train, d.y_noisy,
                 [batch_order(len(d.x_train), cfg.seed, epoch) for epoch in (1, 2, 3)], schedule=True)
    saved = load_checkpoint(run)
    assert all(torch.equal(saved["model"][k], v) for k, v in model.state_dict().items())
    assert saved["optimizer"]["param_groups"][0]["lr"] == lr_at(cfg, 3) < cfg.lr


def test_variants_land_in_their_own_roots_and_train_together(tmp_path, synthetic_arrays):
    vary = parse_vary(["noise_rate=0.0,0.2"])
    assert vary == {"noise_rate": [0.0, 0.2]}
    cfgs, outs = variant_configs("smoke", "mlp3", [0], {"epochs": 1, "n_train": 300, "n_test": 100,
                                                         "base_width": 8, "progress": False}, vary, tmp_path)
    assert [o.name for o in outs] == ["noise_rate0.0", "noise_rate0.2"]
    runs = train_runs(cfgs, outs, synthetic_arrays)
    assert [r.relative_to(tmp_path).as_posix() for r in runs] == ["noise_rate0.0/smoke/mlp3/seed0",
                                                                   "noise_rate0.2/smoke/mlp3/seed0"]
    with pytest.raises(ConfigError, match="may vary"):
        parse_vary(["base_width=8,16"])
