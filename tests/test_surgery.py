import pytest
import timm
import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from headstart.config import BnStats
from headstart.errors import ConfigError
from headstart.surgery import param_groups, replace_head, set_trainable_stages, train_mode
from tests.training.helpers import spec_from_timm


@pytest.fixture(params=["test_resnet", "test_efficientnet"])
def model_and_spec(request):
    torch.manual_seed(0)
    model = timm.create_model(request.param, pretrained=False)
    spec = spec_from_timm(model, request.param)
    return replace_head(model, spec, 3), spec


def trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_replace_head_keeps_names_and_shape(model_and_spec):
    model, spec = model_and_spec
    head = model.get_submodule(spec.classifier)
    assert isinstance(head, nn.Linear)
    assert (head.in_features, head.out_features) == (spec.num_features, 3)
    assert torch.all(head.bias == 0) and head.weight.std() < 0.02
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    assert f"{spec.classifier}.weight" in dict(model.named_parameters())


def test_set_trainable_stages_counts(model_and_spec):
    model, spec = model_and_spec
    head = {f"{spec.classifier}.weight", f"{spec.classifier}.bias"}
    set_trainable_stages(model, spec, 0)
    assert trainable(model) == head
    set_trainable_stages(model, spec, 2)
    assert trainable(model) == head | set(spec.stages[-1]) | set(spec.stages[-2])
    set_trainable_stages(model, spec, None)
    assert trainable(model) == {n for n, _ in model.named_parameters()}
    set_trainable_stages(model, spec, spec.num_stages)
    assert trainable(model) == {n for n, _ in model.named_parameters()}


def test_set_trainable_stages_beyond_raises(model_and_spec):
    model, spec = model_and_spec
    with pytest.raises(
        ConfigError, match=rf"beyond the {spec.num_stages} stages .*0\.\.{spec.num_stages}"
    ):
        set_trainable_stages(model, spec, spec.num_stages + 1)


def norm_buffers(model):
    return {
        name: [b.clone() for b in m.buffers()]
        for name, m in model.named_modules()
        if isinstance(m, _NormBase)
    }


def frozen_norms(model):
    return {
        name
        for name, m in model.named_modules()
        if isinstance(m, _NormBase) and not any(p.requires_grad for p in m.parameters())
    }


def train_steps(model, bn, steps=2):
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(steps):
        train_mode(model, bn=bn)
        loss = model(torch.randn(4, 3, 32, 32) + 2).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("n", [0, 2])
def test_frozen_batchnorm_statistics_do_not_move(model_and_spec, n):
    model, spec = model_and_spec
    set_trainable_stages(model, spec, n)
    frozen = frozen_norms(model)
    assert frozen
    before = norm_buffers(model)
    params_before = {k: v.clone() for k, v in model.state_dict().items()}
    train_steps(model, BnStats.ADAPT)
    after = norm_buffers(model)
    for name in frozen:
        assert all(torch.equal(a, b) for a, b in zip(before[name], after[name], strict=True)), name
    for name, p in model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p, params_before[name]), name
    moved = set(before) - frozen
    if n > 0:  # BatchNorm in trained stages still updates its statistics
        assert moved and all(not torch.equal(before[m][0], after[m][0]) for m in moved)


def test_param_groups_learning_rates_and_decay(model_and_spec):
    model, spec = model_and_spec
    set_trainable_stages(model, spec, 2)
    groups = param_groups(
        model, spec, lr=1.0, backbone_lr_factor=0.1, layer_decay=0.5, weight_decay=0.05
    )
    by_name = {g["name"]: g for g in groups}
    assert groups[0]["name"] == "head"
    assert by_name["head"]["lr"] == 1.0 and by_name["head"]["weight_decay"] == 0.05
    assert by_name["head/no_decay"]["weight_decay"] == 0.0
    last, prev = spec.num_stages - 1, spec.num_stages - 2
    stage_lr = {g["name"].split("/")[0]: g["lr"] for g in groups}
    assert stage_lr[f"stage{last}"] == pytest.approx(0.1)
    assert stage_lr[f"stage{prev}"] == pytest.approx(0.05)
    assert {g["name"].split("/")[0] for g in groups} == {"head", f"stage{last}", f"stage{prev}"}
    for g in groups:
        assert all(p.requires_grad for p in g["params"])
        assert all((p.ndim <= 1) == (g["weight_decay"] == 0.0) for p in g["params"])
    count = sum(len(g["params"]) for g in groups)
    assert count == len(trainable(model))


def test_pretrained_statistics_stay_while_affine_trains(model_and_spec) -> None:
    model, spec = model_and_spec
    set_trainable_stages(model, spec, None, bn=BnStats.PRETRAINED)
    train_mode(model, bn=BnStats.PRETRAINED)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._NormBase)]
    assert norms and all(not m.training for m in norms)
    assert all(p.requires_grad for m in norms for p in m.parameters())
    before = [m.running_mean.clone() for m in norms]
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, norms))
