"""Chapter parameters: each check returns a canonical value or one message naming the valid ones."""

import pytest

from ddd_support.config import MODELS, PROFILES
from ddd_support.errors import ConfigError
from ddd_support.book.parameters import (ParameterError, as_choice_list, as_mapping, as_seed_list,
                                    as_str_list, check_choice, check_str, check_number, check_overrides)


def test_a_valid_choice_is_returned_unchanged():
    assert check_choice("profile", "cpu", PROFILES) == "cpu"


def test_an_unknown_choice_names_every_valid_one():
    with pytest.raises(ParameterError, match="profile: 'gpu' is not valid; valid values: smoke, cpu, paper"):
        check_choice("profile", "gpu", PROFILES)


def test_a_choice_must_have_the_type_of_the_choices():
    with pytest.raises(ParameterError):
        check_choice("flag", 1, [True, False])


def test_parameter_errors_are_config_errors_and_value_errors():
    assert issubclass(ParameterError, ConfigError) and issubclass(ParameterError, ValueError)


@pytest.mark.parametrize("value, expected", [(0, [0]), (3, [3]), ([0, 1, 2], [0, 1, 2]), ((1, 2), [1, 2])])
def test_seeds_accept_one_int_or_a_list(value, expected):
    assert as_seed_list(value) == expected


@pytest.mark.parametrize("value", [[], [0, 0], [-1], -1, [1.5], True, [True], None, "0"])
def test_seeds_refuse_anything_but_distinct_non_negative_ints(value):
    with pytest.raises(ParameterError, match="seeds: .* valid values: a non-negative int"):
        as_seed_list(value)


def test_a_list_passed_as_a_string_names_papermills_yaml_option():
    with pytest.raises(ParameterError, match=r"""give lists and dicts with -y "seeds: \[0, 1\]\""""):
        as_seed_list("[0, 1]")


def test_a_dict_passed_as_a_string_names_papermills_yaml_option():
    with pytest.raises(ParameterError, match=r"""-y "overrides: \{epochs: 30\}\""""):
        check_overrides("{epochs: 30}")


def test_choice_lists_accept_none_one_name_or_a_list():
    assert as_choice_list("models", None, MODELS) is None
    assert as_choice_list("models", "mlp7", MODELS) == ["mlp7"]
    assert as_choice_list("models", ["mlp3", "mlp7"], MODELS) == ["mlp3", "mlp7"]


@pytest.mark.parametrize("value", ["mlp9", ["mlp3", "mlp9"], [], ["mlp3", "mlp3"], 7])
def test_choice_lists_refuse_unknown_or_repeated_names(value):
    with pytest.raises(ParameterError, match="valid values: one of mlp3, mlp5, mlp7, or a list of them"):
        as_choice_list("models", value, MODELS)


def test_choice_lists_may_refuse_none():
    with pytest.raises(ParameterError):
        as_choice_list("models", None, MODELS, allow_none=False)


def test_mappings_accept_none_as_empty():
    assert as_mapping("overrides", None) == {}
    assert as_mapping("overrides", {"a": 1}) == {"a": 1}


def test_mappings_refuse_keys_outside_the_valid_ones():
    with pytest.raises(ParameterError, match="overrides: unknown key.*widht.*valid keys: a, b"):
        as_mapping("overrides", {"widht": 3}, keys=["a", "b"])


def test_overrides_take_config_keys_only():
    assert check_overrides({"epochs": 30}) == {"epochs": 30}
    with pytest.raises(ParameterError, match="unknown key.*epoch;.*valid keys: .*epochs"):
        check_overrides({"epoch": 30})


def test_numbers_within_bounds_pass_and_others_name_the_bounds():
    assert check_number("threshold", 50.0, minimum=1) == 50.0
    assert check_number("threshold", 50, minimum=1) == 50
    with pytest.raises(ParameterError, match="threshold: 0.5 is not valid; valid values: a number >= 1"):
        check_number("threshold", 0.5, minimum=1)
    with pytest.raises(ParameterError, match="n_show: 2.0 is not valid; valid values: an int >= 1 and <= 64"):
        check_number("n_show", 2.0, minimum=1, maximum=64, integer=True)
    with pytest.raises(ParameterError):
        check_number("n_show", True, integer=True)


def test_optional_strings_and_string_lists():
    assert check_str("run_root", None, allow_none=True) is None
    assert check_str("run_root", "../runs") == "../runs"
    assert as_str_list("run_dirs", "runs/a") == ["runs/a"]
    assert as_str_list("run_dirs", ["runs/a", "runs/b"]) == ["runs/a", "runs/b"]
    for bad in ("", 3):
        with pytest.raises(ParameterError, match="run_root: .*valid values: a non-empty string, or None"):
            check_str("run_root", bad, allow_none=True)
    with pytest.raises(ParameterError, match="run_root: None is not valid; valid values: a non-empty string$"):
        check_str("run_root", None)
    with pytest.raises(ParameterError, match="-y"):
        as_str_list("run_dirs", "['runs/a']")
