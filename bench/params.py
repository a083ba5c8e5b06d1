"""Parameter accounting, each number named for what it counts (see docs/methods.md)."""

from __future__ import annotations

from bench.models import head_prefixes


def count_parameters(model, backbone_numel: int, stored_names: set[str]) -> dict[str, int]:
    """trainable: requires_grad, head included. method: trainable minus the task head (the papers'
    %Param numerator). head: the task head. stored: what the adapter checkpoint holds (method + head
    + anything newly initialised). backbone: the pretrained encoder as loaded for the task, before
    the method was attached (the %Param denominator)."""
    heads = head_prefixes(model)
    trainable = method = head = stored = total = 0
    for name, p in model.named_parameters():
        n = p.numel()
        total += n
        is_head = name.startswith(heads)
        head += n if is_head else 0
        if p.requires_grad:
            trainable += n
            method += 0 if is_head else n
        stored += n if name in stored_names else 0
    return {
        "trainable": trainable,
        "method": method,
        "head": head,
        "stored": stored,
        "backbone": backbone_numel,
        "total": total,
    }


def percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


def describe(counts: dict[str, int]) -> str:
    b = counts["backbone"]
    return (
        f"params: method {counts['method']:,} ({percent(counts['method'], b):.4f}% of the {b:,}-param "
        f"backbone, head excluded) | trainable {counts['trainable']:,} (head included) | "
        f"head {counts['head']:,} | stored {counts['stored']:,}"
    )


def flops_per_token(model, weight_gradients: bool) -> float:
    """Estimated training FLOPs per real token: 6N with weight gradients (full FT, SAID/DID, Diff pruning),
    4N without (a frozen backbone: forward 2N + activation gradients 2N), N = the encoder's parameters
    without embeddings (Kaplan et al. 2020's count; attention's sequence-length term left out)."""
    n = sum(p.numel() for name, p in model.base_model.named_parameters() if "embeddings" not in name)
    return (6 if weight_gradients else 4) * n
