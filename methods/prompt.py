"""Prompt tuning (Lester et al. 2021): n trained vectors prepended to the input embeddings, nothing else of
the encoder trained.

peft's PromptTuningConfig does this through its model wrapper (PeftModelForSequenceClassification), which
bench does not use (it would hold the task head twice, and on token classification it lengthens the logits but
not the labels). Here the vectors are prepended by a hook on the transformers model itself: the attention mask
grows by n ones, token type ids by n zeros, and for tagging the labels by n ignored positions and the logits
lose the n virtual positions again, so losses, predictions and metrics see the words only. As in peft, the
virtual tokens come first: a head that reads the first position (BERT's pooler, RoBERTa's classifier) reads
the first virtual token."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from methods import register
from methods.base import Method

INITS = ("vocab", "random")


@dataclass(frozen=True)
class PromptTuningOptions:
    num_virtual_tokens: int = 20
    # vocab: each vector a copy of a random vocabulary embedding (Lester et al.'s "sampled vocab", their best
    # initialisation); random: N(0, the model's initializer_range)
    init: str = "vocab"

    def __post_init__(self):
        if self.num_virtual_tokens < 1:
            raise ValueError(f"num_virtual_tokens {self.num_virtual_tokens} must be at least 1")
        if self.init not in INITS:
            raise ValueError(f"init {self.init!r} is not one of {', '.join(INITS)}")


class SoftPrompt(nn.Module):
    def __init__(self, vectors: torch.Tensor, tagging: bool):
        super().__init__()
        self.vectors = nn.Parameter(vectors)
        self.tagging = tagging

    def prepend(self, model, args, kwargs):
        input_ids = kwargs.pop("input_ids", None)
        embeds = kwargs.pop("inputs_embeds", None)
        if embeds is None:
            embeds = model.get_input_embeddings()(input_ids)
        batch, n = embeds.shape[0], self.vectors.shape[0]
        kwargs["inputs_embeds"] = torch.cat([self.vectors.to(embeds.dtype).expand(batch, -1, -1), embeds], 1)
        for key, fill in (("attention_mask", 1), ("token_type_ids", 0)):
            if kwargs.get(key) is not None:
                value = kwargs[key]
                kwargs[key] = torch.cat([value.new_full((batch, n), fill), value], 1)
        if self.tagging and kwargs.get("labels") is not None:
            labels = kwargs["labels"]
            kwargs["labels"] = torch.cat([labels.new_full((batch, n), -100), labels], 1)
        return args, kwargs

    def drop_virtual(self, model, args, kwargs, output):
        if self.tagging:  # per-token logits: the words' only
            output.logits = output.logits[:, self.vectors.shape[0] :]
        return output


@register
class PromptTuning(Method):
    name = "prompt_tuning"
    display_name = "Prompt tuning"
    summary = "n trained vectors prepended to the input embeddings (Lester et al. 2021; n*H params)"
    config_cls = PromptTuningOptions
    knob = "num_virtual_tokens"
    knob_label = "virtual tokens n"
    knob_values = (1, 5, 10, 20, 50, 100)
    default_lr = 1e-2
    needs_family = False  # input embeddings and inputs_embeds: every transformers encoder has both

    def extra_positions(self, cfg: PromptTuningOptions) -> int:
        return cfg.num_virtual_tokens

    def expected_params(self, model_config, task, family, cfg, special_positions):
        return cfg.num_virtual_tokens * model_config.hidden_size

    def no_decay(self, name: str, param) -> bool:
        return super().no_decay(name, param) or name.endswith("soft_prompt.vectors")

    def attach(self, model, cfg: PromptTuningOptions, ctx):
        table = model.get_input_embeddings().weight
        n = cfg.num_virtual_tokens
        if cfg.init == "vocab":
            rows = torch.randint(0, table.shape[0], (n,), device=table.device)
            vectors = table.detach()[rows].clone()
        else:
            vectors = torch.randn(n, table.shape[1], device=table.device) * model.config.initializer_range
        prompt = SoftPrompt(vectors, tagging=ctx.task.layout == "words")
        model.soft_prompt = prompt  # a submodule: saved, moved and counted with the model
        model.register_forward_pre_hook(lambda m, a, k: prompt.prepend(m, a, k), with_kwargs=True)
        model.register_forward_hook(lambda m, a, k, o: prompt.drop_virtual(m, a, k, o), with_kwargs=True)
        return model
