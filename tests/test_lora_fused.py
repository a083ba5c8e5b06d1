"""LoRA's fused training forward computes what peft's computes: outputs and every gradient, and a few
training steps of a whole model, against peft's own forward on a copy."""

import copy

import pytest
import torch
from peft import LoraConfig, inject_adapter_in_model

from bench.families import families
from methods.lora.fused import FusedLoraLinear, fuse


class TwoProjections(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.query, self.value = torch.nn.Linear(16, 16), torch.nn.Linear(16, 12, bias=False)

    def forward(self, x):
        return self.query(x).sum() + (self.value(x) ** 2).sum()


def lora_pair(dropout=0.0):
    torch.manual_seed(0)
    model = inject_adapter_in_model(
        LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["query", "value"]),
        TwoProjections(),
    )
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
        if "lora_B" in name:
            torch.nn.init.normal_(p)  # peft starts B at zero: the branch would not show
    fused = copy.deepcopy(model)
    return model, fused, fuse(fused)


def test_fused_matches_peft_outputs_and_gradients():
    peft_model, fused, n = lora_pair()
    assert n == 2 and all(type(m) is FusedLoraLinear for m in (fused.query, fused.value))
    x = torch.randn(3, 5, 16, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    a, b = peft_model(x), fused(x2)
    a.backward()
    b.backward()
    assert torch.allclose(a, b, rtol=1e-5)
    assert torch.allclose(x.grad, x2.grad, rtol=1e-4, atol=1e-5)
    grads = {n: p.grad for n, p in peft_model.named_parameters() if p.requires_grad}
    assert len(grads) == 4
    for name, p in fused.named_parameters():
        if p.requires_grad:
            assert torch.allclose(grads[name], p.grad, rtol=1e-4, atol=1e-5), name
    assert list(peft_model.state_dict()) == list(fused.state_dict())  # checkpoints keep peft's names


def test_fused_falls_back_to_peft_where_it_would_differ():
    _, fused, _ = lora_pair(dropout=0.5)  # LoRA dropout acts on the branch alone: peft's path
    x = torch.randn(2, 16)
    assert not fused.query.fusable(x)
    _, fused, _ = lora_pair()
    assert fused.query.fusable(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fused.query.fusable(x)
    fused.query.get_base_layer().weight.requires_grad_(True)  # a trained base weight needs its own gradient
    assert not fused.query.fusable(x)


@pytest.mark.parametrize(
    "family",
    ["bert", *(pytest.param(f, marks=pytest.mark.slow) for f in ("roberta", "deberta-v2", "modernbert"))],
)
def test_training_steps_match_peft(tiny_models, family):
    """Five AdamW steps of the whole tiny model: the fused and peft's forward end at the same weights."""
    from bench.models import load_model
    from bench.tasks import get_task
    from methods import AttachContext, get_method
    from methods.base import apply_method

    task = get_task("sst2")
    torch.manual_seed(0)
    base, _ = load_model(tiny_models[family], task)
    method = get_method("lora")
    cfg = method.make_config({"r": 4})
    ctx = AttachContext(task=task, tokenizer=None, family=families()[family], config=base.config)
    model, _ = apply_method(base, method, cfg, ctx)
    assert any(type(m) is FusedLoraLinear for m in model.modules())
    reference = copy.deepcopy(model)
    for m in reference.modules():
        if type(m) is FusedLoraLinear:
            m.__class__ = FusedLoraLinear.__mro__[1]  # back to peft's Linear
    batch = {"input_ids": torch.randint(5, 40, (4, 9)), "labels": torch.tensor([0, 1, 1, 0])}
    for m in (model, reference):
        m.eval()  # no dropout: both see the same function
        opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2)
        for _ in range(5):
            m(**batch).loss.backward()
            opt.step()
            opt.zero_grad()
    for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters(), strict=True):
        assert torch.allclose(p, q, rtol=1e-4, atol=1e-5), name
