import math

import pytest
import torch

from ddd_support.config import (PROFILES, RESUME_INSENSITIVE_KEYS, TrainConfig, get_profile,
                                parse_overrides, resume_insensitive_keys)
from ddd_support.errors import ConfigError
from ddd_support.train.schedule import lr_at, set_lr

from tests.conftest import tiny_config


def test_the_constant_schedule_keeps_lr_every_epoch():
    cfg = tiny_config(lr=3e-4, epochs=7)
    assert [lr_at(cfg, e) for e in range(1, 8)] == [3e-4] * 7


def test_cosine_starts_at_lr_halves_midway_and_ends_one_step_above_zero():
    cfg = tiny_config(lr=1e-4, epochs=300, lr_schedule="cosine")
    assert lr_at(cfg, 1) == 1e-4
    assert lr_at(cfg, 151) == pytest.approx(0.5e-4, rel=1e-12)
    assert lr_at(cfg, 300) == pytest.approx(1e-4 * (1 + math.cos(math.pi * 299 / 300)) / 2, rel=1e-12)
    assert 0 < lr_at(cfg, 300) < 3e-9
    rates = [lr_at(cfg, e) for e in range(1, 301)]
    assert all(a > b for a, b in zip(rates, rates[1:]))


def test_cosine_matches_torchs_cosine_annealing_stepped_per_epoch():
    cfg = tiny_config(lr=2e-3, epochs=10, lr_schedule="cosine")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=0.0)
    for epoch in range(1, 11):
        assert lr_at(cfg, epoch) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12, abs=1e-18)
        opt.step()
        sched.step()


def test_epochs_count_from_one():
    with pytest.raises(ValueError, match="from 1"):
        lr_at(tiny_config(), 0)


def test_set_lr_sets_float_and_tensor_rates_in_place_one_or_one_per_group():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    rate = torch.tensor(1e-3)
    opt = torch.optim.Adam([{"params": [a], "lr": 1e-3}, {"params": [b], "lr": rate}], fused=True)
    set_lr(opt, 5e-4)
    assert opt.param_groups[0]["lr"] == 5e-4 and opt.param_groups[1]["lr"] is rate
    assert rate.item() == pytest.approx(5e-4)
    set_lr(opt, [1e-2, 2e-2])
    assert opt.param_groups[0]["lr"] == 1e-2 and rate.item() == pytest.approx(2e-2)
    with pytest.raises(ValueError, match="2 parameter groups"):
        set_lr(opt, [1e-2])


def test_lr_schedule_is_validated_and_overridable():
    with pytest.raises(ConfigError, match="lr_schedule must be one of constant, cosine"):
        tiny_config(lr_schedule="linear")
    assert parse_overrides(["lr_schedule=cosine"]) == {"lr_schedule": "cosine"}


def test_paper_cosine_is_the_paper_profile_with_a_cosine_schedule():
    paper, cosine = get_profile("paper").config("mlp7"), get_profile("paper_cosine").config("mlp7")
    differ = {k for k in cosine.to_dict() if cosine.to_dict().get(k) != paper.to_dict().get(k)}
    assert differ == {"profile", "lr_schedule"} and cosine.lr_schedule == "cosine"
    assert list(PROFILES)[:3] == ["smoke", "cpu", "paper"]


def test_a_constant_schedule_is_left_out_of_the_recorded_config_as_in_older_runs():
    cfg = tiny_config()
    assert "lr_schedule" not in cfg.to_dict()
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    cosine = tiny_config(lr_schedule="cosine")
    assert cosine.to_dict()["lr_schedule"] == "cosine" and TrainConfig.from_dict(cosine.to_dict()) == cosine


def test_a_cosine_run_cannot_be_extended_because_its_rates_depend_on_epochs():
    assert resume_insensitive_keys(tiny_config()) == RESUME_INSENSITIVE_KEYS
    assert "epochs" not in resume_insensitive_keys(tiny_config(lr_schedule="cosine"))
