import pytest

from ddd_support.config import PROFILES, TrainConfig, get_profile, parse_overrides, snapshot_epochs
from ddd_support.errors import ConfigError


def test_unknown_profile_error_lists_valid_profiles():
    with pytest.raises(ConfigError, match="smoke, cpu, paper"):
        get_profile("huge")


def test_unknown_model_error_lists_valid_models():
    with pytest.raises(ConfigError, match="mlp3, mlp5, mlp7"):
        TrainConfig(model="mlp9")


def test_unknown_override_key_error_lists_valid_keys():
    with pytest.raises(ConfigError, match="valid keys: .*noise_rate"):
        parse_overrides(["noise=0.2"])


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_noise_rate_outside_unit_interval_is_rejected(rate):
    with pytest.raises(ConfigError, match="noise_rate"):
        TrainConfig(noise_rate=rate)


def test_overrides_are_parsed_to_the_fields_types():
    values = parse_overrides(["epochs=50", "lr=3e-4", "hidden_widths=64,32", "n_train=None",
                              "noise_exact_per_class=true", "device=cpu"])
    assert values == {"epochs": 50, "lr": 3e-4, "hidden_widths": (64, 32), "n_train": None,
                      "noise_exact_per_class": True, "device": "cpu"}


def test_override_with_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match="epochs"):
        parse_overrides(["epochs=many"])


def test_named_models_have_growing_width_and_depth():
    widths = {m: get_profile("paper").config(m).widths for m in ("mlp3", "mlp5", "mlp7")}
    assert widths == {"mlp3": (512,) * 2, "mlp5": (1024,) * 4, "mlp7": (2048,) * 6}


def test_profile_config_applies_overrides_and_records_profile_name():
    cfg = PROFILES["smoke"].config("mlp5", seed=3, overrides={"epochs": 2})
    assert (cfg.profile, cfg.model, cfg.seed, cfg.epochs) == ("smoke", "mlp5", 3, 2)


def test_config_round_trips_through_dict():
    cfg = TrainConfig(hidden_widths=(8, 4), n_train=100)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_snapshot_schedule_is_dense_early_log_spaced_later_and_ends_at_last_epoch():
    epochs = snapshot_epochs(epochs=250, dense_until=5, per_decade=4)
    assert epochs[:6] == [0, 1, 2, 3, 4, 5]
    assert epochs[-1] == 250
    assert {10, 18, 32, 56, 100, 178} <= set(epochs)
    assert len(epochs) == len(set(epochs)) and epochs == sorted(epochs)


@pytest.mark.parametrize("key", ["seed", "noise_seed", "order_seed", "subset_seed"])
def test_negative_seeds_are_rejected(key):
    with pytest.raises(ConfigError, match=f"{key} must be a non-negative integer, got -1"):
        TrainConfig(**{key: -1})


def test_thread_count_below_one_is_rejected():
    with pytest.raises(ConfigError, match="threads must be at least 1"):
        TrainConfig(threads=0)
    assert TrainConfig(threads=None).threads is None and TrainConfig(threads=2).threads == 2


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "CPU", "cuda:", ""])
def test_unknown_devices_are_rejected(device):
    with pytest.raises(ConfigError, match="device must be auto, cpu, cuda, cuda:N or mps"):
        TrainConfig(device=device)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_known_devices_are_accepted(device):
    assert TrainConfig(device=device).device == device


@pytest.mark.parametrize("key, option", [("seed", "--seed"), ("model", "--model"), ("profile", "--profile")])
def test_keys_that_name_the_run_are_refused_as_overrides(key, option):
    with pytest.raises(ConfigError, match=f"{key} is set with {option}, not --set"):
        parse_overrides([f"{key}=3"])
    assert key in parse_overrides([f"{key}=3"], allow_run_keys=True)


@pytest.mark.parametrize("values, message", [
    ({"seed": 2**32}, "seed must be at most 4294967295"),
    ({"noise_seed": 10**14}, "noise_seed must be at most"),
    ({"weight_decay": -1.0}, "weight_decay must be a finite number >= 0"),
    ({"weight_decay": float("nan")}, "weight_decay must be a finite number >= 0"),
    ({"lr": float("nan")}, "lr must be a positive finite number"),
    ({"base_width": 10**8}, "weights, more than the"),
    ({"hidden_widths": (10**6, 10**6)}, "weights, more than the"),
])
def test_values_that_would_fail_later_are_refused_with_the_key(values, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**values)


def test_the_largest_profile_models_are_within_the_size_limit():
    assert TrainConfig(model="mlp7", base_width=2048, seed=2**32 - 1).widths == (8192,) * 6
