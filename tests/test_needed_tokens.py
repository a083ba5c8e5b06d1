"""Layers computed for the tokens needed (bench/needed_tokens.py). The reference is transformers' own layer:
the same weights, method and batch built with `padding_tokens=compute` and `last_layer_tokens=all` must give
the same logits at every real token and the same gradient on every trained tensor, while the short layers'
feed-forward blocks see only the real tokens (and, in the last layer under a sequence head, one token)."""

import pytest
import torch

from bench import needed_tokens
from bench.build import build_model, prepare_data
from bench.errors import BenchError
from bench.families import families
from bench.needed_tokens import FIRST_TOKEN_ONLY, MIN_PADDING, token_layout, use_all_tokens
from bench.resolve import build_config
from bench.tasks import get_task
from bench.train import batch_for

SHORT_FAMILIES = sorted(name for name, fam in families().items() if fam.computes_needed_tokens)
EVERY_TOKEN = {"padding_tokens": "compute", "last_layer_tokens": "all"}  # transformers' layers
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
ROWS = [0, 2, 4, 6, 8, 11]  # rows of the tiny tasks whose lengths differ: 10-28% of the batch is padding


def built(tiny_models, glue_dir, family, method, task="rte", **options):
    cfg = build_config(
        {"method": method, "model": tiny_models[family], "task": task, "data_dir": str(glue_dir), **options}
    )
    b = build_model(cfg, get_task(task))
    return b, prepare_data(cfg, get_task(task), b)


def tokens_seen(model, family):
    """Per layer, the number of token states its feed-forward block receives, one entry per forward."""
    seen = {}
    for i, layer in enumerate(families()[family].layers(model)):
        seen[i] = []
        layer.intermediate.register_forward_hook(lambda m, a, o, i=i: seen[i].append(a[0].shape[:-1].numel()))
    return seen


def logits_and_gradients(b, prep, train=False):
    model = b.model
    model.train(train)
    batch = batch_for(prep, prep.train, ROWS, torch.device("cpu"))
    out = model(**batch)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.logits.detach(), grads, batch["attention_mask"]


def assert_same(full, short):
    (logits_full, grads_full, mask), (logits_short, grads_short, _) = full, short
    if logits_full.dim() == 3:  # a label per token: the real tokens' (the states at the padding are zeros)
        logits_full, logits_short = logits_full[mask.bool()], logits_short[mask.bool()]
    torch.testing.assert_close(logits_short, logits_full, rtol=1e-5, atol=1e-6)
    assert grads_full.keys() == grads_short.keys() and grads_full
    # Tensors whose gradient is zero in exact arithmetic (attention key biases: softmax ignores a constant)
    # hold float noise in both: compared against the largest gradient's scale.
    scale = max(g.abs().max() for g in grads_full.values())
    for name, g in grads_full.items():
        torch.testing.assert_close(grads_short[name], g, rtol=1e-4, atol=1e-5 * scale, msg=name)


def real_count(mask):
    assert 1 - mask.float().mean() >= MIN_PADDING  # the batch is padded enough for the short path
    return int(mask.sum())


@pytest.mark.parametrize("family", SHORT_FAMILIES)
@pytest.mark.parametrize("task", ["rte", "stsb", "conll2003"])
def test_full_fine_tuning_logits_and_gradients_are_the_padded_layers(tiny_models, glue_dir, family, task):
    full = logits_and_gradients(*built(tiny_models, glue_dir, family, "full", task, **EVERY_TOKEN))
    b, prep = built(tiny_models, glue_dir, family, "full", task)
    seen = tokens_seen(b.model, family)
    short = logits_and_gradients(b, prep)
    assert_same(full, short)
    real, last = real_count(full[2]), len(seen) - 1
    assert all(seen[i] == [real] for i in range(last))  # the real tokens, not the (batch, T) grid
    assert seen[last] == [
        len(ROWS) if task != "conll2003" else real
    ]  # the first token's, under a sequence head


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_the_same_through_the_short_layers(tiny_models, glue_dir, method):
    full = logits_and_gradients(*built(tiny_models, glue_dir, "bert", method, **EVERY_TOKEN))
    b, prep = built(tiny_models, glue_dir, "bert", method)
    seen = tokens_seen(b.model, "bert")
    short = logits_and_gradients(b, prep)
    assert_same(full, short)
    if method != "ptuning":  # its prefix reaches the layers as a cache: the padded layer runs (tested below)
        assert len(needed_tokens._last_read[1].groups) == 4  # the attention ran by groups of rows
        assert seen[0] == [real_count(full[2]) + (20 * len(ROWS) if method == "prompt_tuning" else 0)]
        assert seen[len(seen) - 1] == [len(ROWS)]


@pytest.mark.parametrize("option", ["padding_tokens", "last_layer_tokens"])
def test_each_option_alone_gives_the_same_results(tiny_models, glue_dir, option):
    full = logits_and_gradients(*built(tiny_models, glue_dir, "roberta", "lora", **EVERY_TOKEN))
    one = {**EVERY_TOKEN, option: {"padding_tokens": "skip", "last_layer_tokens": "head"}[option]}
    assert_same(full, logits_and_gradients(*built(tiny_models, glue_dir, "roberta", "lora", **one)))


def test_training_mode_with_dropout_runs_the_short_layers(tiny_models, glue_dir):
    b, prep = built(tiny_models, glue_dir, "roberta", "bitfit")
    seen = tokens_seen(b.model, "roberta")
    logits, grads, mask = logits_and_gradients(b, prep, train=True)
    assert seen[0] == [real_count(mask)] and seen[len(seen) - 1] == [len(ROWS)]
    assert torch.isfinite(logits).all() and all(torch.isfinite(g).all() for g in grads.values())


def test_every_token_where_asked_or_the_layers_are_not_berts(tiny_models, glue_dir):
    b, prep = built(tiny_models, glue_dir, "bert", "full", **EVERY_TOKEN)
    seen = tokens_seen(b.model, "bert")
    mask = logits_and_gradients(b, prep)[2]
    assert all(s == [mask.numel()] for s in seen.values())
    b, prep = built(tiny_models, glue_dir, "bert", "full")
    use_all_tokens(b.model)  # what the attention analyses do
    seen = tokens_seen(b.model, "bert")
    logits_and_gradients(b, prep)
    assert all(s == [mask.numel()] for s in seen.values())
    for family in set(families()) - set(SHORT_FAMILIES):  # layers that are not BERT's: never replaced
        b, _ = built(tiny_models, glue_dir, family, "full")
        assert not any(hasattr(m, FIRST_TOKEN_ONLY) for m in b.model.modules())


def test_the_layout_reads_bool_and_additive_masks():
    lengths = torch.tensor([10, 6, 9, 3, 7])  # 15 of 50 cells padding
    keys = torch.arange(10) < lengths[:, None]
    grid = keys[:, None, None, :].expand(5, 1, 10, 10)
    expected = torch.cat([row * 10 + torch.arange(n) for row, n in enumerate(lengths.tolist())])
    additive = torch.where(grid, 0.0, torch.finfo(torch.float32).min)
    for mask in (grid, additive, torch.where(grid, 0.0, float("-inf")), keys[:, None, None, :]):
        layout = token_layout(mask)
        torch.testing.assert_close(layout.real, expected)
        # the rows by length, in groups; each group's grid as long as its longest row, its real cells the
        # rows' tokens in order, and concatenated they come back to the order of `real` through `inverse`
        assert [g.rows for g in layout.groups] == [2, 1, 1, 1]
        assert [g.length for g in layout.groups] == [10, 7, 6, 3]
        assert all(
            g.mask.dtype == mask.dtype and g.mask.shape == (g.rows, 1, 1, g.length) for g in layout.groups
        )
        starts = (lengths.cumsum(0) - lengths).tolist()
        assert layout.groups[0].index.tolist() == [
            *range(10),
            *range(starts[2], starts[2] + 9),
            35,
        ]  # 35: padding
        order = torch.cat([g.index[g.cells] for g in layout.groups])
        torch.testing.assert_close(order[layout.inverse], torch.arange(35))
    assert token_layout(None) is None  # no mask: nothing padded
    few = torch.ones(2, 1, 1, 40, dtype=torch.bool)
    few[1, ..., -1] = False  # 1 of 80 cells: under MIN_PADDING, the padded layer runs
    assert token_layout(few) is None
    other = grid.clone()
    other[0, 0, 2, 5] = False  # a real query that does not see a real key: not padding alone
    layout = token_layout(other)
    assert layout.groups == () and layout.real.tolist() == expected.tolist()  # attention on the whole grid


def test_the_results_do_not_depend_on_the_batch_padding(tiny_models, glue_dir):
    """A row's logits alone equal its logits in a padded batch (skipped padding changes nothing real)."""
    b, prep = built(tiny_models, glue_dir, "electra", "bitfit")
    b.model.eval()
    with torch.no_grad():
        batched = b.model(**batch_for(prep, prep.train, ROWS, torch.device("cpu"))).logits
        alone = torch.cat(
            [b.model(**batch_for(prep, prep.train, [r], torch.device("cpu"))).logits for r in ROWS]
        )
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("option", ["padding_tokens", "last_layer_tokens"])
def test_an_unknown_choice_is_refused(option):
    choices = {"padding_tokens": "compute, skip", "last_layer_tokens": "all, head"}[option]
    with pytest.raises(BenchError, match=rf"unknown {option} 'cls' \(choices: {choices}\)"):
        build_config({option: "cls"})


def saved_bytes(b, prep):
    """Bytes autograd keeps for the backward of one training forward, weights aside."""
    weights = {p.untyped_storage().data_ptr() for p in b.model.parameters()}
    kept = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in weights:
            kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    b.model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        b.model(**batch_for(prep, prep.train, ROWS, torch.device("cpu")))
    return sum(kept.values())


@pytest.mark.parametrize("method", ["bitfit", "full"])
def test_skipping_the_padding_keeps_less_for_the_backward(tiny_models, glue_dir, method):
    """The short layers keep their token states for the real tokens only (a scatter that kept its source
    alive once kept a token state more per layer than transformers' layers)."""
    every = saved_bytes(*built(tiny_models, glue_dir, "bert", method, padding_tokens="compute"))
    assert saved_bytes(*built(tiny_models, glue_dir, "bert", method)) < every
