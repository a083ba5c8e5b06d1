"""PASTA: vectors land at special positions only, at every layer's input, one per position."""

import pytest
import torch

from bench.families import families
from bench.tasks import get_task
from methods import AttachContext, get_method
from methods.pasta import parse_layers


def attach(tiny_models, family, task_name, **options):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_models[family])
    model = AutoModelForSequenceClassification.from_pretrained(tiny_models[family], num_labels=2)
    layers = model.base_model.encoder.layer
    seen = {"before": {}, "after": {}}

    def capture(where, i):
        def hook(module, args, kwargs):
            seen[where][i] = args[0].detach().clone()

        return hook

    for i, layer in enumerate(layers):  # registered before PASTA's hooks: sees the unmodified input
        layer.register_forward_pre_hook(capture("before", i), with_kwargs=True)
    method = get_method("pasta")
    ctx = AttachContext(get_task(task_name), tok, families()[family], model.config)
    model.requires_grad_(False)
    model = method.attach(model, method.make_config(options), ctx)
    for i, layer in enumerate(layers):  # registered after: sees what the layer really receives
        layer.register_forward_pre_hook(capture("after", i), with_kwargs=True)
    return model, tok, seen, ctx


@pytest.mark.parametrize(
    "family, task, m",
    [
        ("bert", "sst2", 2),
        ("bert", "rte", 3),
        ("roberta", "sst2", 2),
        ("roberta", "rte", 4),
        ("bert", "conll2003", 2),
        ("roberta", "conll2003", 2),
    ],
)
def test_m_follows_layout_and_family(tiny_models, family, task, m):
    _, _, _, ctx = attach(tiny_models, family, task)
    assert ctx.special_positions() == m


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_vectors_added_only_at_special_positions_of_every_layer(tiny_models, family):
    model, tok, seen, _ = attach(tiny_models, family, "rte")
    pasta = model.base_model.pasta
    enc = tok(
        ["the cat sat on the mat", "a dog"],
        ["john ran", "paris is very good"],
        padding=True,
        return_tensors="pt",
        return_special_tokens_mask=True,
    )
    model.eval()
    model(**enc)
    special = enc["special_tokens_mask"].bool() & enc["attention_mask"].bool()
    for layer in range(model.config.num_hidden_layers):
        diff = seen["after"][layer] - seen["before"][layer]
        assert torch.all(diff[~special] == 0), "changed a non-special position"
        for b in range(2):
            positions = special[b].nonzero().flatten().tolist()
            assert len(positions) == pasta.positions
            for k, pos in enumerate(positions):
                assert torch.allclose(diff[b, pos], pasta.vectors[layer, k], atol=1e-6)
    # Two [SEP] (or </s>) positions of a pair get different vectors.
    assert not torch.allclose(pasta.vectors[:, 1], pasta.vectors[:, 2])


def test_padding_never_gets_a_vector(tiny_models):
    model, tok, seen, _ = attach(tiny_models, "roberta", "sst2")
    enc = tok(
        ["the cat", "the cat sat on the mat very good"],
        padding=True,
        return_tensors="pt",
        return_special_tokens_mask=True,
    )
    assert enc["input_ids"][0, -1] == tok.pad_token_id
    model.eval()
    model(**enc)
    diff = seen["after"][0] - seen["before"][0]
    assert torch.all(diff[0, enc["attention_mask"][0] == 0] == 0)


def test_dropout_only_in_training(tiny_models):
    model, tok, seen, _ = attach(tiny_models, "bert", "sst2", dropout=0.5)
    pasta = model.base_model.pasta
    enc = tok(["the cat sat"] * 4, return_tensors="pt", return_special_tokens_mask=True)
    model.eval()
    model(**enc)
    assert torch.allclose((seen["after"][0] - seen["before"][0])[0, 0], pasta.vectors[0, 0], atol=1e-6)
    model.train()
    torch.manual_seed(0)
    model(**enc)
    added = (seen["after"][0] - seen["before"][0])[0, 0]
    kept = added != 0
    assert 0 < kept.sum() < added.numel()  # some coordinates dropped, the rest scaled by 1/(1-p)
    assert torch.allclose(added[kept], 2 * pasta.vectors[0, 0][kept], atol=1e-6)


def test_layer_and_token_subsets(tiny_models):
    model, tok, seen, _ = attach(tiny_models, "bert", "rte", layers="last:1", tokens="cls")
    pasta = model.base_model.pasta
    assert pasta.vectors.shape == (1, 1, model.config.hidden_size) and pasta.layer_ids == [1]
    enc = tok(["the cat"], ["a dog"], return_tensors="pt", return_special_tokens_mask=True)
    model.eval()
    model(**enc)
    assert torch.all(seen["after"][0] == seen["before"][0])  # layer 0 untouched
    diff = seen["after"][1] - seen["before"][1]
    assert diff[0, 0].abs().sum() > 0 and torch.all(diff[0, 1:] == 0)  # [CLS] only
    assert parse_layers("first:2", 24) == [0, 1] and parse_layers("0,5,3", 6) == [0, 3, 5]
    with pytest.raises(ValueError, match="out of range"):
        parse_layers("7", 6)
