"""ModernBERT (Warner et al. 2024): pre-LayerNorm blocks without biases, fused Wqkv, rotary positions,
local (sliding-window) attention in two of every three layers, a new dense + norm head."""

from torch import nn

from bench.families import register
from bench.families.base import Family


@register
class ModernBert(Family):
    name = "modernbert"
    model_types = ("modernbert",)
    aliases = {
        "modernbert-base": "answerdotai/ModernBERT-base",
        "modernbert-large": "answerdotai/ModernBERT-large",
    }
    layers_path = "layers"
    projections = {
        "qkv": "attn.Wqkv",
        "attention_output": "attn.Wo",
        "intermediate": "mlp.Wi",
        "output": "mlp.Wo",
    }
    fused = {"query": "qkv", "key": "qkv", "value": "qkv"}
    norms = {"attention_norm": "attn_norm", "output_norm": "mlp_norm"}
    # Pre-norm: each sub-layer's output goes straight into the residual add; the adapter follows its output
    # projection (attention: after Wo and its dropout; MLP: after Wo, whose dropout comes before it).
    adapter_sites = ("attn.out_drop", "mlp.Wo")
    attention_path = "attn"
    absolute_positions = False
    prefix_space_for_words = True
    tiny_config = {
        "max_position_embeddings": 160,
        "global_attn_every_n_layers": 2,
        "local_attention": 8,
        "classifier_pooling": "mean",
        "attention_bias": False,
        "mlp_bias": False,
        "norm_bias": False,
    }
    tiny_tokenizer = "bpe-cls"

    def hidden_dropout(self, config):
        return config.mlp_dropout  # dropout on a sub-layer's output before the residual add (0.0 as released)

    def has_biases(self, config):
        return any(getattr(config, f, False) for f in ("attention_bias", "mlp_bias", "norm_bias"))

    def no_bias_reason(self, config):
        return (
            f"{self.name} has no bias terms in its encoder (attention_bias, mlp_bias and norm_bias are false)"
        )

    def projection_shape(self, role, config):
        H, I = config.hidden_size, config.intermediate_size  # noqa: E741
        shapes = {"qkv": (H, 3 * H), "intermediate": (H, 2 * I), "output": (I, H)}  # Wi: GLU, 2I wide
        return shapes.get(self.fused.get(role, role), (H, H))

    def bias_params(self, config):
        L, H, I = config.num_hidden_layers, config.hidden_size, config.intermediate_size  # noqa: E741
        attention = L * 4 * H if config.attention_bias else 0  # Wqkv (3H) + Wo (H)
        mlp = L * (2 * I + H) if config.mlp_bias else 0  # Wi (2I: GLU) + Wo (H)
        norms = (2 * L - 1 + 2) * H if config.norm_bias else 0  # as norm_params, betas only
        return attention + mlp + norms

    def local_attention(self, config):
        local = [i for i, kind in enumerate(config.layer_types) if kind == "sliding_attention"]
        if not local:
            return None
        return (
            f"{len(local)} of its {config.num_hidden_layers} layers (global attention in the others) "
            f"attend within +-{config.local_attention // 2} tokens only: a farther token cannot see "
            "[CLS] or [SEP]"
        )

    def norm_params(self, config):
        L, H = config.num_hidden_layers, config.hidden_size
        norms = 2 * L - 1 + 2  # attn_norm (an Identity in layer 0) and mlp_norm per layer, embeddings, final
        return norms * H * (2 if config.norm_bias else 1)

    def linear_head(self, model, task):
        # classifier(dropout(state)) instead of classifier(dropout(head(state))): the token head has the extra
        # dense + norm too, so tagging changes as well; sequences read the first token rather than the mean.
        model.head = nn.Identity()
        model.config.classifier_pooling = "cls"
        return []
