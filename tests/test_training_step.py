"""Three steps of bench's training loop against a plain-PyTorch loop written here from the definitions: the
reference scripts' uniform shuffle (torch.randperm with the run's seed, cut into batches), AdamW with
decoupled weight decay on matrices only, the options' eps and beta2, a linear warmup then linear decay, and
global gradient-norm clipping. The trained parameters must end equal."""

import copy

import pytest
import torch

from bench.batching import collate
from bench.build import build_model, prepare_data
from bench.device import make_accelerator
from bench.resolve import build_config
from bench.tasks import get_task
from bench.train import train

OPTIONS = {
    "batch_order": "uniform",
    "adam_eps": 1e-6,
    "adam_beta2": 0.98,
    "max_grad_norm": 1e-3,
    "warmup_ratio": 0.34,
    "weight_decay": 0.1,
    "lr": 1e-2,
    "max_steps": 3,
    "batch_size": 4,
    "seed": 5,
}


def no_dropout(model):
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    model.config.attention_probs_dropout_prob = 0.0


@pytest.mark.parametrize("method", ["bitfit", "lora"])
def test_three_steps_match_a_plain_loop(tiny_models, glue_dir, method):
    cfg = build_config(
        {"method": method, "model": tiny_models["bert"], "task": "rte", "data_dir": str(glue_dir), **OPTIONS}
    )
    task = get_task("rte")
    built = build_model(cfg, task)
    no_dropout(built.model)
    prep = prepare_data(cfg, task, built)
    plain = copy.deepcopy(built.model)
    start = {n: p.detach().clone() for n, p in plain.named_parameters()}
    accelerator, _ = make_accelerator("fp32")
    train(
        built.model,
        prep,
        cfg,
        accelerator,
        built.stored_names,
        lambda *a: None,
        progress=False,
        method=built.method,
        method_cfg=built.method_config,
    )

    # The plain loop.
    params = {n: p for n, p in plain.named_parameters() if p.requires_grad}
    decay = [p for n, p in params.items() if p.ndim >= 2 and "LayerNorm" not in n]
    rest = [p for n, p in params.items() if not (p.ndim >= 2 and "LayerNorm" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
        lr=1e-2,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    total, warmup = 3, int(0.34 * 3)

    def factor(k):  # linear warmup to the peak, then linear decay to 0 at `total`
        return k / warmup if k < warmup else (total - k) / (total - warmup)

    schedule = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    n = len(prep.train["labels"])
    order = torch.randperm(n, generator=torch.Generator().manual_seed(5)).tolist()
    plain.train()
    for step in range(total):
        rows = order[step * 4 : (step + 1) * 4]
        batch = collate(prep.train, rows, prep.pad_id)
        batch.pop("special_tokens_mask", None)
        plain(**batch).loss.backward()
        norm = torch.sqrt(sum((p.grad**2).sum() for p in params.values()))
        scale = min(1.0, 1e-3 / (float(norm) + 1e-6))
        assert scale < 1.0  # clipping is active in this test
        for p in params.values():
            p.grad.mul_(scale)
        opt.step()
        schedule.step()
        opt.zero_grad()
    ours = dict(built.model.named_parameters())
    for name, p in params.items():
        assert torch.allclose(ours[name], p, atol=1e-6), (name, (ours[name] - p).abs().max())
    assert all(
        not torch.equal(p, start[n]) for n, p in params.items() if "lora_A" not in n
    )  # every one trained


def test_uniform_order_is_not_length_grouped(tiny_models, glue_dir):
    """The option changes what is drawn: the length-grouped default sorts rows by length inside
    mega-batches."""
    from bench.batching import training_batches

    lengths = list(range(1, 41))
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    uniform = training_batches("uniform", lengths, 4, g())
    grouped = training_batches("length", lengths, 4, g())
    assert sorted(i for b in uniform for i in b) == list(range(40)) == sorted(i for b in grouped for i in b)
    assert uniform[0] == torch.randperm(40, generator=g()).tolist()[:4]
    spread = lambda batches: max(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches)  # noqa: E731
    assert spread(grouped) <= 3 < spread(uniform)


@pytest.mark.parametrize("select_metric, best_epoch", [(None, 2), ("f1", 1), ("accuracy", 2)])
def test_the_selection_metric_picks_the_best_epoch(
    tiny_models, glue_dir, monkeypatch, select_metric, best_epoch
):
    """MRPC's main metric is the mean of F1 and accuracy; select_metric=f1 picks the epoch with the best F1,
    as references that select on the metric they report do."""
    import bench.train

    scripted = iter(
        [
            {"dev": {"f1": 0.9, "accuracy": 0.5, "glue_score": 0.7}},
            {"dev": {"f1": 0.8, "accuracy": 0.9, "glue_score": 0.85}},
        ]
    )
    monkeypatch.setattr(bench.train, "evaluate", lambda *a, **k: next(scripted))
    cfg = build_config(
        {
            "method": "bitfit",
            "model": tiny_models["bert"],
            "task": "mrpc",
            "data_dir": str(glue_dir),
            "epochs": 2,
            "batch_size": 8,
            "lr": 1e-3,
            "select_metric": select_metric,
        }
    )
    task = get_task("mrpc")
    built = build_model(cfg, task)
    prep = prepare_data(cfg, task, built)
    accelerator, _ = make_accelerator("fp32")
    res = train(
        built.model,
        prep,
        cfg,
        accelerator,
        built.stored_names,
        lambda *a: None,
        progress=False,
        method=built.method,
        method_cfg=built.method_config,
    )
    assert res.best_epoch == best_epoch


def test_a_bad_selection_metric_is_one_line():
    from bench.errors import BenchError

    with pytest.raises(
        BenchError, match=r"unknown select_metric for task mrpc: 'mcc' \(choices: accuracy, f1"
    ):
        build_config({"task": "mrpc", "select_metric": "mcc"})
    with pytest.raises(BenchError, match="unknown batch_order 'sorted'"):
        build_config({"batch_order": "sorted"})
    with pytest.raises(BenchError, match="unknown dropout_draws 'philox'.*fast, torch"):
        build_config({"dropout_draws": "philox"})


def test_mnli_overall_accuracy_pools_both_dev_sets(tiny_models, glue_dir):
    """dev_all scores matched + mismatched predictions together: the size-weighted mean of the two accuracies
    (checked with unequal sizes), never the plain mean; the best epoch is still picked on matched."""
    import numpy as np

    from bench.encoding import split_rows
    from bench.train import evaluate

    cfg = build_config(
        {"method": "head", "model": tiny_models["bert"], "task": "mnli", "data_dir": str(glue_dir)}
    )
    task = get_task("mnli")
    built = build_model(cfg, task)
    prep = prepare_data(cfg, task, built)
    prep.dev["dev_mismatched"] = split_rows(prep.dev["dev_mismatched"], np.arange(4))
    accelerator, _ = make_accelerator("fp32")
    m = evaluate(built.model, prep, 8, accelerator.autocast)
    assert list(m) == ["dev_matched", "dev_mismatched", "dev_all"]
    n_m, n_mm = len(prep.dev["dev_matched"]["labels"]), 4
    expected = (n_m * m["dev_matched"]["accuracy"] + n_mm * m["dev_mismatched"]["accuracy"]) / (n_m + n_mm)
    assert m["dev_all"]["accuracy"] == pytest.approx(expected, abs=1e-12)


def test_groups_can_keep_their_lr_and_be_clipped_apart(tiny_models, glue_dir, monkeypatch):
    """A method's group with schedule=constant keeps its lr while the others decay, and each clip_group is
    clipped on its own norm (Diff pruning's gates and diff, as its reference): checked against a plain
    loop."""
    from methods.bitfit import BitFit

    def groups(self, model, cfg, weight_decay):
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        head = [p for n, p in params if n.startswith("classifier.")]
        body = [p for n, p in params if not n.startswith("classifier.")]
        return [
            {"params": body, "weight_decay": 0.0, "clip_group": "body"},
            {"params": head, "weight_decay": 0.0, "lr": 3e-2, "clip_group": "head", "schedule": "constant"},
        ]

    monkeypatch.setattr(BitFit, "param_groups", groups)
    cfg = build_config(
        {
            "method": "bitfit",
            "model": tiny_models["bert"],
            "task": "rte",
            "data_dir": str(glue_dir),
            **{**OPTIONS, "warmup_ratio": 0.0},
        }
    )
    task = get_task("rte")
    built = build_model(cfg, task)
    no_dropout(built.model)
    prep = prepare_data(cfg, task, built)
    plain = copy.deepcopy(built.model)
    accelerator, _ = make_accelerator("fp32")
    train(
        built.model,
        prep,
        cfg,
        accelerator,
        built.stored_names,
        lambda *a: None,
        progress=False,
        method=built.method,
        method_cfg=built.method_config,
    )

    named = {n: p for n, p in plain.named_parameters() if p.requires_grad}
    head = [p for n, p in named.items() if n.startswith("classifier.")]
    body = [p for n, p in named.items() if not n.startswith("classifier.")]
    opt = torch.optim.AdamW(
        [{"params": body, "weight_decay": 0.0}, {"params": head, "weight_decay": 0.0, "lr": 3e-2}],
        lr=1e-2,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    order = torch.randperm(len(prep.train["labels"]), generator=torch.Generator().manual_seed(5)).tolist()
    plain.train()
    for step in range(3):
        for g, lr in zip(opt.param_groups, (1e-2 * (3 - step) / 3, 3e-2), strict=True):  # decay vs constant
            g["lr"] = lr
        batch = collate(prep.train, order[step * 4 : (step + 1) * 4], prep.pad_id)
        batch.pop("special_tokens_mask", None)
        plain(**batch).loss.backward()
        for part in (body, head):  # each clipped on its own norm
            norm = float(torch.sqrt(sum((p.grad**2).sum() for p in part)))
            for p in part:
                p.grad.mul_(min(1.0, 1e-3 / (norm + 1e-6)))
        opt.step()
        opt.zero_grad()
    ours = dict(built.model.named_parameters())
    for name, p in named.items():
        assert torch.allclose(ours[name], p, atol=1e-6), name


def test_diff_pruning_groups_follow_its_reference(tiny_models, glue_dir):
    cfg = build_config(
        {"method": "diffprune", "model": tiny_models["bert"], "task": "rte", "data_dir": str(glue_dir)}
    )
    built = build_model(cfg, get_task("rte"))
    groups = built.method.param_groups(built.model, built.method_config, 0.01)
    by_clip = {g["clip_group"] for g in groups if g["params"]}
    assert by_clip == {"model", "diff", "gates"}
    (gates,) = [g for g in groups if g["clip_group"] == "gates"]
    assert gates["schedule"] == "constant" and gates["lr"] == built.method_config.alpha_lr


class LossAtStep:
    """A method stand-in whose loss term is `value` at one step (1-based) and absent otherwise."""

    def __init__(self, method, at: int, value: float):
        self.method, self.at, self.value = method, at, value

    def __getattr__(self, name):
        return getattr(self.method, name)

    def loss_term(self, model, cfg, step, total):
        return torch.tensor(self.value) if step + 1 == self.at else None


def run_logged(tiny_models, glue_dir, method_wrapper=None, logged=None, **options):
    """Trains the tiny BERT with bench's loop; returns (what it logged, each step's loss as the model
    returned it, read by a hook here)."""
    cfg = build_config(
        {"method": "bitfit", "model": tiny_models["bert"], "task": "rte", "data_dir": str(glue_dir)}
        | OPTIONS
        | options
    )
    task = get_task("rte")
    built = build_model(cfg, task)
    seen = []
    built.model.register_forward_hook(
        lambda m, a, out: seen.append(out.loss.item()) if m.training else None, with_kwargs=False
    )
    logged = [] if logged is None else logged
    method = built.method if method_wrapper is None else method_wrapper(built.method)
    train(
        built.model,
        build_prep := prepare_data(cfg, task, built),
        cfg,
        make_accelerator("fp32")[0],
        built.stored_names,
        lambda metrics, step: logged.append((step, metrics)),
        progress=False,
        method=method,
        method_cfg=built.method_config,
    )
    del build_prep
    return logged, seen


def test_logged_loss_is_the_mean_of_each_window(tiny_models, glue_dir):
    """The loop reads its losses once per log window: each logged train_loss must be the mean of the losses
    the model returned over the steps since the previous log (windows of 4 steps, the last of 1; epochs of
    6 steps, so evaluations fall inside windows)."""
    logged, seen = run_logged(tiny_models, glue_dir, max_steps=41, log_every=4)
    windows = [(step, m["train_loss"]) for step, m in logged if "train_loss" in m]
    bounds = [*range(0, 41, 4), 41]
    assert [s for s, _ in windows] == bounds[1:] and len(seen) == 41
    for (step, value), lo, hi in zip(windows, bounds[:-1], bounds[1:], strict=True):
        assert value == pytest.approx(sum(seen[lo:hi]) / (hi - lo), rel=1e-6), step


@pytest.mark.parametrize("at", [5, 7])
def test_non_finite_loss_names_its_own_step(tiny_models, glue_dir, at):
    """A loss that is not finite ends training with its own step named, also inside a log window (the loop
    reads losses once per 4-step window) and before an evaluation (after step 6, the end of an epoch)."""
    from bench.errors import NonFiniteLoss

    logged = []
    with pytest.raises(NonFiniteLoss, match=rf"loss became nan at step {at}$"):
        run_logged(
            tiny_models,
            glue_dir,
            lambda m: LossAtStep(m, at, float("nan")),
            logged=logged,
            max_steps=40,
            log_every=4,
        )
    evaluated = [step for step, m in logged if "epoch" in m]  # what an evaluation logs
    assert all(step < at for step in evaluated)
    assert (6 in evaluated) == (at == 7)  # the first epoch's evaluation ran only before the loss broke


class FailsAfter(LossAtStep):
    """As LossAtStep, and the step's own update then fails (as a method's hook may on NaN gradients)."""

    def after_step(self, model, cfg, step, total):
        if step == self.at:
            raise RuntimeError("hook failed on NaN gradients")


def test_failure_after_a_non_finite_loss_is_reported_as_that_loss(tiny_models, glue_dir):
    from bench.errors import NonFiniteLoss

    with pytest.raises(NonFiniteLoss, match=r"loss became nan at step 3$"):
        run_logged(tiny_models, glue_dir, lambda m: FailsAfter(m, 3, float("nan")), max_steps=40, log_every=4)
