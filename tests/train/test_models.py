import pytest
import torch

from ddd_support.config import TrainConfig
from ddd_support.errors import ConfigError
from ddd_support.models import MLP, build_model, model_from_config, parameter_count


@pytest.mark.parametrize("name,depth", [("mlp3", 2), ("mlp5", 4), ("mlp7", 6)])
def test_named_models_have_their_number_of_hidden_layers(name, depth):
    model = build_model(name, base_width=8)
    assert len(model.linears) == depth
    assert model(torch.zeros(5, 3072)).shape == (5, 10)


def test_parameter_count_matches_the_module():
    model = build_model("mlp5", base_width=16)
    assert sum(p.numel() for p in model.parameters()) == parameter_count(model.widths)
    assert parameter_count((512, 512)) == 3072 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10


def test_activations_come_from_the_same_pass_as_the_logits():
    model = MLP((7, 5, 3))
    x = torch.randn(4, 3072)
    logits, acts = model.forward_with_activations(x)
    assert torch.equal(logits, model(x))
    assert [a.shape[1] for a in acts.post] == [7, 5, 3]
    for pre, post in zip(acts.pre, acts.post):
        assert torch.equal(post, torch.relu(pre))


def test_same_seed_same_initialisation():
    a = model_from_config(TrainConfig(base_width=4, seed=1))
    b = model_from_config(TrainConfig(base_width=4, seed=1))
    c = model_from_config(TrainConfig(base_width=4, seed=2))
    assert torch.equal(a.linears[0].weight, b.linears[0].weight)
    assert not torch.equal(a.linears[0].weight, c.linears[0].weight)


def test_empty_width_list_is_rejected():
    with pytest.raises(ConfigError):
        MLP(())
