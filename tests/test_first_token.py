"""The last layer for the first token only (bench/first_token.py). The reference is transformers' own layer:
the same weights, method and batch built with `last_layer_tokens=all` must give the same logits and the same
gradient on every trained tensor, while the short layer's query, feed-forward and norms see one token."""

import pytest
import torch

from bench.build import build_model, prepare_data
from bench.errors import BenchError
from bench.families import families
from bench.first_token import FIRST_TOKEN_ONLY, use_all_tokens
from bench.resolve import build_config
from bench.tasks import get_task
from bench.train import batch_for

SHORT_FAMILIES = sorted(name for name, fam in families().items() if fam.first_token_last_layer)
METHODS = (
    "head",
    "bitfit",
    "lora",
    "adapter",
    "pasta",
    "ptuning",
    "prompt_tuning",
    "diffprune",
    "said",
    "ia3",
    "vera",
)


def built(tiny_models, glue_dir, family, method, tokens, task="rte"):
    cfg = build_config(
        {
            "method": method,
            "model": tiny_models[family],
            "task": task,
            "data_dir": str(glue_dir),
            "last_layer_tokens": tokens,
        }
    )
    b = build_model(cfg, get_task(task))
    return b, prepare_data(cfg, get_task(task), b)


def tokens_seen(model, family):
    """The number of tokens the last layer's feed-forward block receives, one entry per forward."""
    layer = families()[family].layers(model)[-1]
    seen = []
    layer.intermediate.register_forward_hook(lambda m, a, o: seen.append(a[0].shape[1]))
    return seen


def logits_and_gradients(b, prep, train=False):
    model = b.model
    model.train(train)
    batch = batch_for(prep, prep.train, list(range(6)), torch.device("cpu"))
    out = model(**batch)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.logits.detach(), grads, batch["input_ids"].shape[1]


def assert_same(full, short):
    (logits_full, grads_full, _), (logits_short, grads_short, _) = full, short
    torch.testing.assert_close(logits_short, logits_full, rtol=1e-5, atol=1e-6)
    assert grads_full.keys() == grads_short.keys() and grads_full
    # Tensors whose gradient is zero in exact arithmetic (attention key biases: softmax ignores a constant)
    # hold float noise in both: compared against the largest gradient's scale.
    scale = max(g.abs().max() for g in grads_full.values())
    for name, g in grads_full.items():
        torch.testing.assert_close(grads_short[name], g, rtol=1e-4, atol=1e-5 * scale, msg=name)


@pytest.mark.parametrize("family", SHORT_FAMILIES)
@pytest.mark.parametrize("task", ["rte", "stsb"])
def test_full_fine_tuning_logits_and_gradients_are_the_full_layers(tiny_models, glue_dir, family, task):
    full = logits_and_gradients(*built(tiny_models, glue_dir, family, "full", "all", task))
    b, prep = built(tiny_models, glue_dir, family, "full", "head", task)
    seen = tokens_seen(b.model, family)
    short = logits_and_gradients(b, prep)
    assert_same(full, short)
    assert seen == [1] and full[2] > 1  # the short layer ran, on one token of several


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_the_same_through_the_short_layer(tiny_models, glue_dir, method):
    full = logits_and_gradients(*built(tiny_models, glue_dir, "bert", method, "all"))
    b, prep = built(tiny_models, glue_dir, "bert", method, "head")
    seen = tokens_seen(b.model, "bert")
    assert_same(full, logits_and_gradients(b, prep))
    assert seen == [1]


def test_training_mode_with_dropout_runs_the_short_layer(tiny_models, glue_dir):
    b, prep = built(tiny_models, glue_dir, "roberta", "bitfit", "head")
    seen = tokens_seen(b.model, "roberta")
    logits, grads, _ = logits_and_gradients(b, prep, train=True)
    assert (
        seen == [1] and torch.isfinite(logits).all() and all(torch.isfinite(g).all() for g in grads.values())
    )


def test_every_token_where_the_head_reads_every_token_or_it_is_asked(tiny_models, glue_dir):
    b, prep = built(tiny_models, glue_dir, "bert", "full", "head", task="conll2003")  # a label per token
    seen = tokens_seen(b.model, "bert")
    logits_and_gradients(b, prep)
    assert seen[0] > 1
    b, prep = built(tiny_models, glue_dir, "bert", "full", "head")
    use_all_tokens(b.model)  # what the attention analyses do
    seen = tokens_seen(b.model, "bert")
    logits_and_gradients(b, prep)
    assert seen[0] > 1
    for family in set(families()) - set(SHORT_FAMILIES):  # layers that are not BERT's: never replaced
        b, _ = built(tiny_models, glue_dir, family, "full", "head")
        assert not any(hasattr(m, FIRST_TOKEN_ONLY) for m in b.model.modules())


def test_an_unknown_choice_is_refused():
    with pytest.raises(BenchError, match=r"unknown last_layer_tokens 'cls' \(choices: all, head\)"):
        build_config({"last_layer_tokens": "cls"})
