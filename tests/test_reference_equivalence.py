"""Every method against an independent plain-PyTorch computation written here from the papers' equations:
a BERT/RoBERTa encoder from its weights (embeddings, self-attention, FFN, post-LayerNorm), the family's head,
and each method's change to it (Diff pruning: theta0 + z * diff at its test-time gate; SAID/DID: theta0 +
[lambda_i] P_i theta_d with the Fastfood transform from its definition and a textbook butterfly Walsh-Hadamard
transform, d above some tensors' sizes). Logits and the
gradient of every trainable tensor must match ours to 1e-5 (dropout off), on tiny BERT and RoBERTa, sequence
and token classification. LoRA is also compared with peft's get_peft_model."""

import math

import pytest
import torch
import torch.nn.functional as F

from bench.build import build_model, prepare_data
from bench.resolve import build_config
from bench.tasks import get_task
from bench.train import batch_for

OPTIONS = {
    "lora": {"r": 2, "alpha": 4},
    "adapter": {"size": 3},
    "ptuning": {"prefix_length": 2},
    "pasta": {"init_std": 0.5},
    "bitfit": {},
    "full": {},
    "diffprune": {"structured": True},
    # d above the tiny model's biases (32 entries) and below its embeddings: both of the reference's cases
    "did": {"d": 300},
    "said": {"d": 300},
}
# Diff pruning's hard-concrete stretch (Louizos et al. 2018; the constants of dguo98/DiffPruning): at test
# time a gate is z = clamp(sigmoid(log_alpha) * (ZETA - GAMMA) + GAMMA, 0, 1).
GAMMA, ZETA = -1.5, 1.5


def gate_mean(log_alpha):
    return (torch.sigmoid(log_alpha) * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)


def setup(tiny_models, glue_dir, method, family, task_name):
    cfg = build_config(
        {
            "method": method,
            "model": tiny_models[family],
            "task": task_name,
            "data_dir": str(glue_dir),
            "method_options": OPTIONS.get(method, {}),
            "max_length": 32,
            "seed": 3,
        }
    )
    task = get_task(task_name)
    built = build_model(cfg, task)
    prep = prepare_data(cfg, task, built)
    with torch.no_grad():  # LoRA's B and the adapters start at (near) zero: move them so they matter
        for name, p in built.model.named_parameters():
            if "lora_B" in name or ".adapter." in name or name.endswith(".diff"):
                p.normal_(0, 0.3)
            elif name.endswith("log_alpha"):  # gates strictly between closed and open, so that they matter
                p.normal_(0, 0.5)
            elif name == "subspace.theta":  # zero at the start: moved so that the transform matters
                p.normal_(0, 0.3)
            elif name == "subspace.scales":
                p.normal_(1.0, 0.3)
            elif name.startswith("classifier."):  # a small new head hides differences under the tolerance
                p.normal_(0, 1.0)
    batch = batch_for(prep, prep.train, list(range(5)), torch.device("cpu"))
    return built, task, batch


def trained_by_definition(method: str, name: str, prefix: str) -> bool:
    """What each method trains, written from its paper (head included; BERT's pretrained pooler frozen), never
    read from our model: the trainable set is checked, not copied."""
    if method in ("said", "did"):  # theta_d (and SAID's scale per tensor) only; head and encoder projected
        return name in ("subspace.theta", "subspace.scales")
    head = name.startswith("classifier.")
    body = name.removeprefix(f"{prefix}.")
    return (
        head
        or {
            "full": True,
            "head": False,
            "pasta": body == "pasta.vectors",
            "adapter": ".adapter." in body or "LayerNorm" in body,  # the adapters and every LayerNorm
            "lora": "lora_A" in body or "lora_B" in body,
            "ptuning": body.startswith("prefix_encoder."),
            "bitfit": body.endswith(
                ".bias"
            ),  # every bias of the encoder, LayerNorm betas and the pooler's too
            # a diff and its gate logits for every pretrained tensor (the embeddings' too), plus a gate per
            # tensor (structured); the pretrained values stay frozen
            "diffprune": body.endswith((".diff", ".log_alpha", ".group_log_alpha")),
        }[method]
    )


def walsh_hadamard(x):
    """The textbook butterfly, (a, b) -> (a + b, a - b) at strides 1, 2, 4, ...: x @ H_n in Sylvester order
    (checked against the dense matrix below); independent of bench's blocked fwht."""
    n, h = x.shape[-1], 1
    while h < n:
        pairs = x.reshape(n // (2 * h), 2, h)
        x = torch.stack((pairs[:, 0] + pairs[:, 1], pairs[:, 0] - pairs[:, 1]), 1).reshape(n)
        h *= 2
    return x


def test_the_butterfly_is_the_sylvester_hadamard_product():
    h = torch.ones(1, 1)
    for _ in range(4):
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    x = torch.randn(16)
    assert torch.allclose(walsh_hadamard(x), x @ h, atol=1e-5)


def fastfood(P, theta):
    """P theta for one tensor of D entries (Le et al. 2013; the public intrinsic-dimension code): theta
    zero-padded to n = 2^ceil(log2 D), or cut to its first n entries when d > n, then H G Pi H B, rows cut
    to D, divided by sqrt(D * sum G^2). P supplies only its random draws."""
    signs, gauss = P.signs_and_gauss(torch.device("cpu"))
    n, D = P.n, P.numel
    x = torch.cat([theta, theta.new_zeros(max(n - theta.numel(), 0))])[:n].double()  # exact to float32
    x = walsh_hadamard(x * signs)
    x = walsh_hadamard(x[P.perm.long()] * gauss.double())  # (Pi x)[k] = x[perm[k]]
    return (x[:D] / math.sqrt(D * float((gauss.double() ** 2).sum()))).float()


class Ref:
    """The reference forward over cloned leaf tensors (independent of our modules and their autograd); which
    of them train comes from the methods' definitions (trained_by_definition)."""

    def __init__(self, model, method, family, order=None):
        self.p = {
            n: t.detach().clone().requires_grad_(trained_by_definition(method, n, model.base_model_prefix))
            for n, t in model.named_parameters()
        }
        # SAID/DID: each tensor's transform (its random draws only) and the tensor's place in the model's
        # parameter order (`order`, from a model without the method), which picks its scale
        self.transform = {
            name.removesuffix(".0.projection").replace(".parametrizations.", "."): module
            for name, module in model.named_modules()
            if name.endswith(".0.projection")
        }
        self.order = order
        self.conf, self.method, self.family = model.config, method, family
        self.prefix = model.base_model_prefix  # bert | roberta

    def w(self, name):
        """A pretrained tensor by its plain name (LoRA wraps the projection as base_layer)."""
        name = f"{self.prefix}.{name}" if not name.startswith("classifier") else name
        if name in self.p:
            return self.p[name]
        head, _, leaf = name.rpartition(".")
        gated = f"{head}.parametrizations.{leaf}"
        if f"{gated}.original" in self.p and self.method in ("said", "did"):
            delta = fastfood(self.transform[name], self.p["subspace.theta"])
            if self.method == "said":
                delta = delta * self.p["subspace.scales"][self.order.index(name)]
            return self.p[f"{gated}.original"] + delta.view_as(self.p[f"{gated}.original"])
        if f"{gated}.original" in self.p:  # Diff pruning: theta0 + z * diff, z the test-time gate
            z = gate_mean(self.p[f"{gated}.0.log_alpha"])
            if f"{gated}.0.group_log_alpha" in self.p:
                z = z * gate_mean(self.p[f"{gated}.0.group_log_alpha"])
            return self.p[f"{gated}.original"] + z * self.p[f"{gated}.0.diff"]
        return self.p[f"{head}.base_layer.{leaf}"]

    def linear(self, x, name):
        return x @ self.w(f"{name}.weight").T + self.w(f"{name}.bias")

    def layer_norm(self, x, name):
        return F.layer_norm(
            x, (x.shape[-1],), self.w(f"{name}.weight"), self.w(f"{name}.bias"), self.conf.layer_norm_eps
        )

    def adapter(self, x, where):
        a = f"{self.prefix}.{where}.dropout.adapter"
        down = x @ self.p[f"{a}.down.weight"].T + self.p[f"{a}.down.bias"]
        return x + F.gelu(down) @ self.p[f"{a}.up.weight"].T + self.p[f"{a}.up.bias"]

    def projection(self, x, name):  # W x + b, plus (alpha / r) B A x for LoRA's targets
        out = self.linear(x, name)
        key = f"{self.prefix}.{name}.lora_A.default.weight"
        if self.method == "lora" and key in self.p:
            opts = OPTIONS["lora"]
            b = self.p[f"{self.prefix}.{name}.lora_B.default.weight"]
            out = out + (opts["alpha"] / opts["r"]) * (x @ self.p[key].T) @ b.T
        return out

    def forward(self, batch, task):
        c = self.conf
        ids, mask = batch["input_ids"], batch["attention_mask"]
        B, T = ids.shape
        heads, d = c.num_attention_heads, c.hidden_size // c.num_attention_heads
        if self.family == "roberta":  # positions count real tokens from padding_idx + 1
            positions = (torch.cumsum(mask, 1) * mask) + c.pad_token_id
        else:
            positions = torch.arange(T).expand(B, T)
        types = batch.get("token_type_ids", torch.zeros_like(ids))
        h = (
            self.w("embeddings.word_embeddings.weight")[ids]
            + self.w("embeddings.position_embeddings.weight")[positions]
            + self.w("embeddings.token_type_embeddings.weight")[types]
        )
        h = self.layer_norm(h, "embeddings.LayerNorm")
        key_mask = mask.bool()
        if self.method == "pasta":  # k-th special position of each sequence (padding excluded)
            special = batch["special_tokens_mask"].bool() & mask.bool()
            ordinal = torch.cumsum(special.long(), 1) - 1
        for i in range(c.num_hidden_layers):
            L = f"encoder.layer.{i}"
            if self.method == "pasta":  # e[l, k] added to the k-th special position at the layer's input
                vectors = self.p[f"{self.prefix}.pasta.vectors"][i]
                add = torch.zeros_like(h)
                b_idx, t_idx = special.nonzero(as_tuple=True)
                add = add.index_put((b_idx, t_idx), vectors[ordinal[b_idx, t_idx]])
                h = h + add

            def split(x):
                return x.view(B, -1, heads, d).transpose(1, 2)

            q = split(self.projection(h, f"{L}.attention.self.query"))
            k = split(self.projection(h, f"{L}.attention.self.key"))
            v = split(self.projection(h, f"{L}.attention.self.value"))
            allowed = key_mask
            if self.method == "ptuning":  # p key and value vectors per layer prepended; every query sees them
                kv = self.p[f"{self.prefix}.prefix_encoder.embedding"].view(
                    -1, c.num_hidden_layers, 2, heads, d
                )
                pk, pv = (kv[:, i, j].permute(1, 0, 2).unsqueeze(0).expand(B, -1, -1, -1) for j in (0, 1))
                k, v = torch.cat([pk, k], 2), torch.cat([pv, v], 2)
                allowed = torch.cat([torch.ones(B, pk.shape[2], dtype=torch.bool), key_mask], 1)
            scores = q @ k.transpose(-1, -2) / math.sqrt(d)
            scores = scores.masked_fill(~allowed[:, None, None, :], float("-inf"))
            context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, -1)
            a = self.linear(context, f"{L}.attention.output.dense")
            if self.method == "adapter":
                a = self.adapter(a, f"{L}.attention.output")
            h = self.layer_norm(a + h, f"{L}.attention.output.LayerNorm")
            f = self.linear(F.gelu(self.linear(h, f"{L}.intermediate.dense")), f"{L}.output.dense")
            if self.method == "adapter":
                f = self.adapter(f, f"{L}.output")
            h = self.layer_norm(f + h, f"{L}.output.LayerNorm")
        if task.layout == "words":
            return self.linear(h, "classifier")
        if self.family == "roberta":  # RobertaClassificationHead: dense + tanh on <s>, then out_proj
            return self.linear(torch.tanh(self.linear(h[:, 0], "classifier.dense")), "classifier.out_proj")
        pooled = torch.tanh(self.linear(h[:, 0], "pooler.dense"))
        return self.linear(pooled, "classifier")


def close(a, b, tol: float = 1e-5) -> bool:
    """Equal to `tol` of the tensor's scale (float32 sums of values around 50 round at ~1e-5)."""
    return bool((a - b).abs().max() <= tol * max(1.0, b.abs().max().item()))


# SAID/DID's coordinates: each of the d gradient entries sums a projection of every base parameter's gradient
# (about 10^5 float32 terms on the tiny models), in an order that differs between the two computations and
# between CPUs' kernels (1.5e-5 of the scale seen on an AMD EPYC, within 1e-5 on Intel hosts).
SUMMED_OVER_THE_MODEL = {"subspace.theta": 5e-5}


def loss_of(logits, batch, task):
    labels = batch["labels"]
    if task.kind == "regression":
        return F.mse_loss(logits.squeeze(-1), labels)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


# RTE (pairs) in the fast subset; regression and tagging heads in the full suite.
@pytest.mark.parametrize(
    "task_name",
    ["rte", pytest.param("stsb", marks=pytest.mark.slow), pytest.param("conll2003", marks=pytest.mark.slow)],
)
@pytest.mark.parametrize("family", ["bert", "roberta"])
@pytest.mark.parametrize(
    "method", ["pasta", "adapter", "lora", "ptuning", "bitfit", "full", "head", "diffprune", "said", "did"]
)
def test_logits_and_gradients_match_the_equations(tiny_models, glue_dir, method, family, task_name):
    built, task, batch = setup(tiny_models, glue_dir, method, family, task_name)
    model = built.model
    plain = setup(tiny_models, glue_dir, "head", family, task_name)[0].model if method == "said" else None
    ref = Ref(model, method, family, plain and [n for n, _ in plain.named_parameters()])
    model.eval()  # dropout off, gradients on
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    loss_of(logits, batch, task).backward()
    ref_logits = ref.forward(batch, task)
    trainable = {n: t for n, t in ref.p.items() if t.requires_grad}
    grads = torch.autograd.grad(loss_of(ref_logits, batch, task), list(trainable.values()), allow_unused=True)
    if logits.dim() == 3:  # a label per token: the real tokens' (bench skips the padding: padding_tokens)
        real = batch["attention_mask"].bool()
        logits, ref_logits = logits[real], ref_logits[real]
    assert close(logits, ref_logits), (logits - ref_logits).abs().max()
    ours = dict(model.named_parameters())
    assert set(trainable) == {n for n, p in ours.items() if p.requires_grad}
    for (name, _), g in zip(trainable.items(), grads, strict=True):
        mine = ours[name].grad
        if g is None:  # e.g. BERT's pooler under token classification: no path to the loss
            assert mine is None or torch.count_nonzero(mine) == 0, name
            continue
        tol = SUMMED_OVER_THE_MODEL.get(name, 1e-5)
        assert mine is not None and close(mine, g, tol), (name, (mine - g).abs().max())


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_lora_matches_peft_get_peft_model(tiny_models, glue_dir, family):
    from peft import LoraConfig, get_peft_model

    built, task, batch = setup(tiny_models, glue_dir, "lora", family, "rte")
    ours = built.model
    plain, _, _ = setup(tiny_models, glue_dir, "head", family, "rte")
    peft_model = get_peft_model(
        plain.model, LoraConfig(r=2, lora_alpha=4, lora_dropout=0.0, target_modules=["query", "value"])
    )
    theirs = {n.removeprefix("base_model.model."): p for n, p in peft_model.named_parameters()}
    with torch.no_grad():
        for name, p in ours.named_parameters():
            theirs[name].copy_(p)  # the same weights, LoRA factors and head
    ours.eval()
    peft_model.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        assert torch.allclose(ours(**inputs).logits, peft_model(**inputs).logits, atol=1e-6)
