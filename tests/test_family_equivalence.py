"""PASTA, Adapter and LoRA on the newer families against references written here: the unmodified
transformers model with the method's equation applied by this test's own hooks (PASTA: a vector added at the
k-th special token, found from the token ids, at every layer's input; Houlsby: x + up(gelu(down(x))) on each
sub-layer's output before the residual add) or through peft's get_peft_model (LoRA, the family's projections
named here). Logits and the gradient of every trained tensor must match ours."""

import pytest
import torch
import torch.nn.functional as F

from bench.build import build_model, prepare_data
from bench.resolve import build_config
from bench.tasks import get_task
from bench.train import batch_for

# Written from each architecture's modelling code, not read from bench/families.
LAYERS = {"modernbert": "model.layers", "deberta-v2": "deberta.encoder.layer"}
ADAPTER_AFTER = {
    "modernbert": ("attn", "mlp"),  # pre-norm: the sub-layer's output is added to the residual
    "deberta-v2": ("attention.output.dense", "output.dense"),
}  # post-norm: before dropout+add+LN
LORA_TARGETS = {"modernbert": ["Wqkv"], "deberta-v2": ["query_proj", "value_proj"]}
OPTIONS = {"pasta": {"init_std": 0.5}, "adapter": {"size": 3}, "lora": {"r": 2, "alpha": 4}}


def build(tiny_models, glue_dir, method, family, lean=True):
    cfg = build_config(
        {
            "method": method,
            "model": tiny_models[family],
            "task": "rte",
            "data_dir": str(glue_dir),
            "method_options": OPTIONS.get(method, {}),
            "max_length": 32,
            "seed": 3,
        }
    )
    task = get_task("rte")
    built = build_model(cfg, task, lean=lean)
    with torch.no_grad():  # LoRA's B and the adapters start at (near) zero: move them so they matter
        for name, p in built.model.named_parameters():
            if "lora_B" in name or ".adapter." in name:
                p.normal_(0, 0.3)
    return built, task, prepare_data(cfg, task, built)


def reference_model(tiny_models, glue_dir, family, ours):
    plain, _, _ = build(tiny_models, glue_dir, "head", family, lean=False)  # transformers' code
    model = plain.model
    own = dict(model.named_parameters())
    with torch.no_grad():
        for name, p in ours.named_parameters():
            plain_name = name.replace(".base_layer.", ".").replace(".inner.", ".")
            if plain_name in own:
                own[plain_name].copy_(p)
    model.requires_grad_(False)
    return model


def add_pasta(model, family, vectors, special_ids, input_ids):
    special = torch.isin(input_ids, special_ids)
    k = torch.where(special, special.long().cumsum(1) - 1, -1)
    where = (k >= 0).nonzero(as_tuple=True)
    for i, layer in enumerate(model.get_submodule(LAYERS[family])):

        def hook(module, args, i=i):
            hidden = args[0].clone()
            hidden[where] = hidden[where] + vectors[i][k[where]]
            return (hidden, *args[1:])

        layer.register_forward_pre_hook(hook)


def add_adapters(model, family, ours):
    """Returns the reference's adapter tensors by our names, cloned."""
    tensors = {}
    for i, layer in enumerate(model.get_submodule(LAYERS[family])):
        for j, path in enumerate(ADAPTER_AFTER[family]):
            ours_site = [n for n, _ in ours.named_modules() if n.endswith(".adapter") and f".{i}." in n][j]
            w = {
                part: dict(ours.named_parameters())[f"{ours_site}.{part}"]
                .detach()
                .clone()
                .requires_grad_(True)
                for part in ("down.weight", "down.bias", "up.weight", "up.bias")
            }
            tensors |= {f"{ours_site}.{part}": t for part, t in w.items()}

            def hook(module, args, out, w=w):
                x = out[0] if isinstance(out, tuple) else out
                y = x + F.linear(
                    F.gelu(F.linear(x, w["down.weight"], w["down.bias"])), w["up.weight"], w["up.bias"]
                )
                return (y, *out[1:]) if isinstance(out, tuple) else y

            layer.get_submodule(path).register_forward_hook(hook)
    return tensors


@pytest.mark.parametrize("family", ["modernbert", "deberta-v2"])
@pytest.mark.parametrize("method", ["pasta", "adapter", "lora"])
def test_matches_the_reference_on_newer_families(tiny_models, glue_dir, method, family):
    built, task, prep = build(tiny_models, glue_dir, method, family)
    ours = built.model
    batch = batch_for(prep, prep.train, list(range(5)), torch.device("cpu"))
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "special_tokens_mask")}
    ref = reference_model(tiny_models, glue_dir, family, ours)
    tensors = {}
    if method == "pasta":
        vectors = ours.base_model.pasta.vectors.detach().clone().requires_grad_(True)
        tok = built.tokenizer
        add_pasta(
            ref, family, vectors, torch.tensor([tok.cls_token_id, tok.sep_token_id]), batch["input_ids"]
        )
        tensors = {"pasta.vectors": vectors}
    elif method == "adapter":
        tensors = add_adapters(ref, family, ours)
    else:
        from peft import LoraConfig, get_peft_model

        ref = get_peft_model(
            ref, LoraConfig(r=2, lora_alpha=4, lora_dropout=0.0, target_modules=LORA_TARGETS[family])
        )
        theirs = {n.removeprefix("base_model.model."): p for n, p in ref.named_parameters()}
        with torch.no_grad():
            for name, p in ours.named_parameters():
                if "lora_" in name:
                    theirs[name].copy_(p)
        tensors = {n: p for n, p in theirs.items() if "lora_" in n}
    for name, p in ref.named_parameters() if method != "lora" else []:  # norms and head train as ours do
        if name.startswith(("classifier.", "pooler.", "head.")) or (
            method == "adapter" and "norm" in name.lower()
        ):
            p.requires_grad_(True)
            tensors[name] = p
    ours.eval()
    ref.eval()
    logits = ours(**{k: v for k, v in batch.items() if k != "labels"}).logits
    ref_logits = ref(**inputs).logits
    assert torch.allclose(logits, ref_logits, atol=1e-5), (logits - ref_logits).abs().max()
    F.cross_entropy(logits, batch["labels"]).backward()
    F.cross_entropy(ref_logits, batch["labels"]).backward()
    mine = {n: p for n, p in ours.named_parameters() if p.requires_grad}
    method_tensors = {n for n in mine if not n.startswith(("classifier.", "pooler.", "head."))}
    compared = 0
    for name in method_tensors:
        key = next((k for k in tensors if name.endswith(k) or k.endswith(name) or k == name), None)
        assert key is not None, name
        assert torch.allclose(mine[name].grad, tensors[key].grad, atol=1e-5), name
        compared += 1
    assert compared == len(method_tensors) > 0
