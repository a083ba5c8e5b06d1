"""`bench heads`: the vertical-head analysis behind PASTA. A head is vertical when at least `threshold` of the
query tokens give their largest attention to a special token, diagonal when that share goes to the previous,
same or next token, else heterogeneous. Two definitions (DEFINITIONS): `reference`, the PASTA authors'
plot_attentions.py (is_vertical: every query row counts, a hit is an argmax on the first or the last token of
the input: [CLS] and the final [SEP]), the default; `special-tokens`, bench's earlier variant (the special
tokens' own queries left out unless asked, a hit on any special token: a pair's middle [SEP] too). Scores are
per input (unpadded, one at a
time), then averaged over inputs with their spread. `--ablate vertical` masks the vertical heads of a model
and re-evaluates it, beside as many randomly drawn non-vertical heads."""

from __future__ import annotations

import contextlib
import csv
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

from bench import record, tracking
from bench.build import build_model, prepare_data
from bench.checkpoint import checkpoint_dir
from bench.device import make_accelerator
from bench.errors import BenchError
from bench.families import of
from bench.families.base import eager_attention
from bench.logs import quiet_libraries
from bench.models import family
from bench.needed_tokens import use_all_tokens
from bench.reload import load_checkpoint
from bench.resolve import build_config
from bench.tasks import get_task
from bench.train import evaluate
from methods.ptuning import eager_implementation, with_prefix
from reports.render import render, save_figure

KINDS = ("vertical", "diagonal", "heterogeneous")
MASKED_ATTN = "bench_head_masked_eager"


@dataclass
class HeadScores:
    vertical: np.ndarray  # (inputs, layers, heads): share of query tokens whose argmax key is special
    diagonal: np.ndarray  # same shape: share whose argmax key is the previous, same or next token
    threshold: float
    count_special_queries: bool
    definition: str = "reference"

    def kinds(self) -> np.ndarray:
        v, d = self.vertical.mean(0), self.diagonal.mean(0)
        out = np.full(v.shape, "heterogeneous", dtype=object)
        out[d >= self.threshold] = "diagonal"
        out[v >= self.threshold] = "vertical"  # vertical wins where both pass (a special token next door)
        return out

    def rows(self) -> list[dict]:
        kinds = self.kinds()
        layers, heads = kinds.shape
        return [
            {
                "layer": layer,
                "head": head,
                "kind": kinds[layer, head],
                "vertical": float(self.vertical[:, layer, head].mean()),
                "vertical_std": float(self.vertical[:, layer, head].std(ddof=1))
                if len(self.vertical) > 1
                else 0.0,
                "diagonal": float(self.diagonal[:, layer, head].mean()),
                "diagonal_std": float(self.diagonal[:, layer, head].std(ddof=1))
                if len(self.diagonal) > 1
                else 0.0,
            }
            for layer in range(layers)
            for head in range(heads)
        ]


def use_eager_attention(model) -> None:
    """Attention weights come only from an eager implementation. P-tuning v2 models keep their prefix and
    report the weights on the input tokens only (the argmax is taken among the input tokens). Every token
    goes through the last layer: its weights are scored for every query."""
    model.config._attn_implementation = eager_implementation(model.config)
    use_all_tokens(model)


def score_heads(
    model,
    data: dict,
    n: int,
    threshold: float,
    count_special_queries: bool = False,
    extra_columns: tuple[str, ...] = (),
    definition: str = "reference",
) -> HeadScores:
    """The first n examples of an encoded split, each fed alone (no padding) with attention weights."""
    use_eager_attention(model)
    model.eval()
    device = next(model.parameters()).device
    vertical, diagonal = [], []
    ids, special = data["input_ids"], data["special_tokens_mask"]
    types = data.get("token_type_ids")
    with torch.inference_mode():
        for i in range(min(n, len(ids))):
            x = torch.as_tensor(ids[i], dtype=torch.long, device=device)[None]
            kwargs = {"input_ids": x, "attention_mask": torch.ones_like(x), "output_attentions": True}
            if types is not None:
                kwargs["token_type_ids"] = torch.as_tensor(types[i], dtype=torch.long, device=device)[None]
            if "special_tokens_mask" in extra_columns:  # the method reads it from the batch (PASTA)
                kwargs["special_tokens_mask"] = torch.as_tensor(special[i], dtype=torch.long, device=device)[
                    None
                ]
            att = torch.stack(model(**kwargs).attentions)[:, 0]  # (layers, heads, queries, keys)
            is_special = torch.as_tensor(special[i], dtype=torch.bool, device=device)
            scored = input_scores(att, is_special, count_special_queries, definition)
            if scored is not None:
                vertical.append(scored[0])
                diagonal.append(scored[1])
    if not vertical:
        raise BenchError("no input had a non-special token to score")
    return HeadScores(np.stack(vertical), np.stack(diagonal), threshold, count_special_queries, definition)


DEFINITIONS = ("reference", "special-tokens")


def input_scores(att, is_special, count_special_queries: bool, definition: str = "reference"):
    """One input's attention (layers, heads, queries, keys) -> per head, the share of the counted query tokens
    whose largest attention is on a target key (vertical) and on the previous, same or next token (diagonal);
    None when no query token is counted. reference: every query, targets the first and the last token;
    special-tokens: non-special queries (all with count_special_queries), targets every special token."""
    if definition == "reference":
        queries = torch.ones_like(is_special)
        targets = torch.zeros_like(is_special)
        targets[0] = targets[-1] = True
    else:
        queries = torch.ones_like(is_special) if count_special_queries else ~is_special
        targets = is_special
    if not queries.any():
        return None
    top = att.argmax(-1)  # (layers, heads, queries)
    q = torch.arange(top.shape[-1], device=top.device)
    vertical = targets[top][..., queries].float().mean(-1)
    diagonal = ((top - q).abs() <= 1)[..., queries].float().mean(-1)
    return vertical.cpu().numpy(), diagonal.cpu().numpy()


def per_layer_table(scores: HeadScores) -> list[list]:
    kinds = scores.kinds()
    return [
        [layer, *(int((kinds[layer] == k).sum()) for k in KINDS), f"{scores.vertical[:, layer].mean():.3f}"]
        for layer in range(kinds.shape[0])
    ]


def plot_grid(scores: HeadScores, path_stem: str, title: str) -> list[str]:
    import matplotlib  # lazy: the Agg backend is chosen before pyplot loads

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    kinds = scores.kinds()
    layers, heads = kinds.shape
    code = np.vectorize({"vertical": 0, "diagonal": 1, "heterogeneous": 2}.get)(kinds)
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * heads + 2), max(3, 0.35 * layers + 1.5)))
    ax.imshow(code, cmap=ListedColormap(["#d95f02", "#1b9e77", "#cccccc"]), vmin=0, vmax=2, aspect="auto")
    v = scores.vertical.mean(0)
    for layer in range(layers):
        for head in range(heads):
            ax.text(head, layer, f"{v[layer, head]:.2f}", ha="center", va="center", fontsize=7)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(heads))
    ax.set_yticks(range(layers))
    ax.legend(
        handles=[
            Patch(color=c, label=k) for c, k in zip(["#d95f02", "#1b9e77", "#cccccc"], KINDS, strict=True)
        ],
        bbox_to_anchor=(1.02, 1),
        loc="upper left",
        fontsize=8,
    )

    ax.set_title("\n".join(textwrap.wrap(title, 100)), fontsize=8)

    return save_figure(fig, path_stem)


def write_outputs(scores: HeadScores, out_dir: Path, name: str, title: str, extra: dict) -> list[str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = scores.rows()
    with open(out_dir / f"{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out_dir / f"{name}.json").write_text(
        json.dumps(
            {
                **extra,
                "threshold": scores.threshold,
                "count_special_queries": scores.count_special_queries,
                "definition": scores.definition,
                "inputs": len(scores.vertical),
                "heads": rows,
            },
            indent=1,
        )
    )
    return [
        str(out_dir / f"{name}.csv"),
        str(out_dir / f"{name}.json"),
        *plot_grid(scores, str(out_dir / name), title),
    ]


# --- ablation: mask heads, re-evaluate ---


def _masked_attention(module, query, key, value, attention_mask, **kwargs):
    key, value, attention_mask, _ = with_prefix(
        module, query, key, value, attention_mask
    )  # P-tuning v2 keeps its prefix
    out, weights = eager_attention(module, query, key, value, attention_mask, **kwargs)
    mask = getattr(module, "bench_head_mask", None)
    if mask is not None:  # out: (batch, tokens, heads, head_dim)
        out = out * mask.to(out.dtype)[None, None, :, None]
    return out, weights


def set_head_mask(model, masked: set[tuple[int, int]]) -> None:
    fam = of(model)
    if fam.attention_path is None:
        raise BenchError(f"--ablate: heads of {fam.name} cannot be masked: {fam.attention_note}")
    AttentionInterface.register(MASKED_ATTN, _masked_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(MASKED_ATTN, eager_mask)  # padding masked as for eager attention
    heads = model.config.num_attention_heads
    for i, layer in enumerate(fam.layers(model)):
        fam.attention_module(layer).bench_head_mask = torch.tensor(
            [0.0 if (i, h) in masked else 1.0 for h in range(heads)]
        )
    model.config._attn_implementation = MASKED_ATTN


def ablation(
    model, prep, scores: HeadScores, draws: int, eval_batch_size: int, autocast, seed: int = 0
) -> dict:
    """The dev metric with no head masked, with the vertical heads masked, and with as many non-vertical heads
    drawn at random (`draws` times: mean and spread)."""
    task = prep.task
    split, metric = task.dev_splits[0], task.main_metric
    kinds = scores.kinds()
    vertical = {(int(a), int(b)) for a, b in zip(*np.nonzero(kinds == "vertical"), strict=True)}
    others = [(int(a), int(b)) for a, b in zip(*np.nonzero(kinds != "vertical"), strict=True)]

    def score(masked):
        set_head_mask(model, masked)
        return evaluate(model, prep, eval_batch_size, autocast)[split][metric]

    rng = np.random.default_rng(seed)
    random = [
        score({others[i] for i in rng.choice(len(others), len(vertical), replace=False)})
        for _ in range(draws if len(others) >= len(vertical) > 0 else 0)
    ]
    return {
        "metric": f"{split}_{metric}",
        "none": score(set()),
        "vertical": score(vertical),
        "n_masked": len(vertical),
        "random_mean": float(np.mean(random)) if random else None,
        "random_std": float(np.std(random, ddof=1)) if len(random) > 1 else None,
        "random_draws": len(random),
    }


# --- comparing two analyses ---


def compare(a_path: str, b_path: str) -> str:
    def load(p):
        try:
            return json.loads(Path(p).read_text())
        except (OSError, ValueError) as e:
            raise BenchError(
                f"heads analysis {p} is not readable ({type(e).__name__}); give the JSON file "
                "`bench heads` wrote"
            ) from None

    a, b = load(a_path), load(b_path)
    ha = {(r["layer"], r["head"]): r for r in a.get("heads", [])}
    hb = {(r["layer"], r["head"]): r for r in b.get("heads", [])}
    if not ha or set(ha) != set(hb):
        raise BenchError(f"{a_path} and {b_path} do not describe the same layers and heads")
    body = [
        [ka, *(sum(1 for k in ha if ha[k]["kind"] == ka and hb[k]["kind"] == kb) for kb in KINDS)]
        for ka in KINDS
    ]
    changed = [
        f"L{layer}H{head}: {ha[(layer, head)]['kind']} -> {hb[(layer, head)]['kind']} "
        f"(vertical {ha[(layer, head)]['vertical']:.2f} -> {hb[(layer, head)]['vertical']:.2f})"
        for layer, head in sorted(ha)
        if ha[(layer, head)]["kind"] != hb[(layer, head)]["kind"]
    ]
    shift = np.mean([hb[k]["vertical"] - ha[k]["vertical"] for k in ha])
    table = render(
        [f"{a.get('label', a_path)} \\ {b.get('label', b_path)}", *KINDS],
        [[str(x) for x in r] for r in body],
        "md",
        f"Heads by kind in each analysis (rows: the first, columns: the second); mean change of the "
        f"vertical score {shift:+.3f}.",
    )
    return table + ("\n" + "\n".join(changed) + "\n" if changed else "\nno head changed kind\n")


def run_analysis(
    model: str | None,
    task_name: str | None,
    data_dir: str | None,
    samples: int,
    threshold: float,
    count_special_queries: bool,
    run_id: str | None,
    checkpoint: str | None,
    ablate: str | None,
    draws: int,
    out_dir: str,
    tracking_uri: str | None,
    echo=print,
    definition: str = "reference",
) -> dict:
    """The whole `bench heads` command: score, write the files, optionally ablate, track it in MLflow."""
    if samples < 1 or not 0 < threshold <= 1 or draws < 1:
        raise BenchError(
            f"--samples {samples} and --draws {draws} must be at least 1 and --threshold {threshold} "
            "in (0, 1]"
        )
    if ablate not in (None, "vertical"):
        raise BenchError(f"unknown --ablate {ablate!r} (choices: vertical)")
    tuned = bool(run_id or checkpoint)
    if ablate and not tuned:
        raise BenchError("--ablate needs a tuned model: give --run RUN_ID or --checkpoint DIR")
    if not tuned and not (model and task_name):
        raise BenchError("bench heads needs --model and --task (or --run / --checkpoint)")
    quiet_libraries()
    uri = tracking.resolve_uri(tracking_uri)
    tracking.check_reachable(uri)
    with checkpoint_dir(run_id, checkpoint, tracking_uri) if tuned else contextlib.nullcontext() as directory:
        if tuned:
            cfg, task, built, _ = load_checkpoint(directory, data_dir)
            source = run_id or str(Path(checkpoint).resolve())
        else:
            task = get_task(task_name)
            cfg = build_config({"method": "head", "model": model, "task": task.name, "data_dir": data_dir})
            built = build_model(cfg, task)
            source = "pretrained"
    prep = prepare_data(cfg, task, built, train=False)
    split = task.dev_splits[0]
    fam = family(built.model)
    local = (
        fam.local_attention(built.model.config) if fam else None
    )  # PASTA's premise needs [CLS]/[SEP] in view
    scores = score_heads(
        built.model,
        prep.dev[split],
        samples,
        threshold,
        count_special_queries,
        built.method.batch_columns,
        definition,
    )
    label = f"{Path(cfg.model).name} {cfg.method if tuned else 'pretrained'} on {task.name}"
    name = f"heads-{Path(cfg.model).name}-{task.name}-{cfg.method if tuned else 'pretrained'}"
    if definition == "reference":
        rule = "share of all query tokens whose largest attention is on the first or the last token"
    else:
        queries = "all query tokens" if count_special_queries else "non-special query tokens"
        rule = f"share of {queries} whose largest attention is on a special token"
    title = (
        f"{label}: vertical score per head ({rule}; definition {definition}), "
        f"{len(scores.vertical)} {split} inputs, threshold {threshold}"
    )
    files = write_outputs(
        scores,
        Path(out_dir),
        name,
        title,
        {"label": label, "source": source, "split": split, "local_attention": local},
    )
    kinds = scores.kinds()
    counts = {k: int((kinds == k).sum()) for k in KINDS}
    result = {"counts": counts, "files": files, "ablation": None}
    if ablate:
        accelerator, _ = make_accelerator(cfg.precision)
        result["ablation"] = ablate_result = ablation(
            built.model, prep, scores, draws, cfg.eval_batch_size, accelerator.autocast
        )
    tags = {
        "phase": record.HEADS,
        "model": cfg.model,
        "task": task.name,
        "method": cfg.method if tuned else "-",
        "source": source,
    }
    with tracking.tracked_run(uri, record.experiment_name(task.name), name, tags) as tracker:
        tracker.log_params(
            {
                "samples": len(scores.vertical),
                "threshold": threshold,
                "split": split,
                "count_special_queries": count_special_queries,
                "definition": definition,
                "ablate": ablate or "-",
                "draws": draws,
            }
        )
        metrics = {f"heads_{k}": v for k, v in counts.items()}
        if result["ablation"]:
            a = result["ablation"]
            metrics |= {
                f"ablation_{k}": v for k, v in a.items() if isinstance(v, (int, float)) and v is not None
            }
        tracker.log_metrics(metrics)
        for f in files:
            tracker.client.log_artifact(tracker.run_id, f, "heads")
        result["run_id"] = tracker.run_id
    table = render(
        ["layer", *KINDS, "mean vertical score"],
        [[str(x) for x in r] for r in per_layer_table(scores)],
        "md",
        f"{title}. Vertical >= threshold wins over diagonal (previous, same or next token).",
    )
    echo(table)
    if local:
        echo(f"note: {Path(cfg.model).name}: {local}")
    if result["ablation"]:
        a = ablate_result
        rand = (
            "no non-vertical draw"
            if a["random_mean"] is None
            else f"{a['random_mean']:.4f}"
            + (f" ± {a['random_std']:.4f}" if a["random_std"] is not None else "")
            + f" over {a['random_draws']} draws"
        )
        echo(
            f"ablation on {a['metric']}: none masked {a['none']:.4f}; the {a['n_masked']} vertical heads "
            f"masked "
            f"{a['vertical']:.4f}; {a['n_masked']} random non-vertical heads masked {rand}"
        )
    echo(f"MLflow run {result['run_id']} (phase heads); wrote " + ", ".join(files))
    return result
