"""Every method on real data with MiniLM and a modest CPU budget; prints a Markdown table read back
from MLflow. Usage: python benchmarks/methods_minilm.py [--tasks rte,mrpc] [--methods pasta,lora]
[--data-dir ../shared/data] [--tracking-uri sqlite:///bench-methods.db] [--table-only]"""

import argparse
import subprocess
import sys

from bench.tasks import get_task
from bench.tracking import runs_frame

# Per task: training examples kept (the first N), epochs, batch size. Small enough for 2 CPU cores.
BUDGETS = {"rte": (1000, 2, 16), "mrpc": (2000, 2, 16), "stsb": (2000, 1, 16), "conll2003": (2000, 1, 16)}
# Short budgets need livelier learning rates than the papers' long schedules.
LR = {"full": 5e-5, "pasta": 1e-2, "adapter": 1e-3, "bitfit": 3e-3, "lora": 1e-3, "ptuning": 1e-2}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", default=",".join(BUDGETS))
    ap.add_argument("--methods", default=",".join(LR))
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--tracking-uri", default="sqlite:///bench-methods.db")
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()
    tasks, methods = args.tasks.split(","), args.methods.split(",")
    if not args.table_only:
        for task in tasks:
            n, epochs, bs = BUDGETS[task]
            for method in methods:
                cmd = [
                    "bench",
                    "run",
                    "--method",
                    method,
                    "--model",
                    "minilm",
                    "--task",
                    task,
                    "--data-dir",
                    args.data_dir,
                    "--max-train-samples",
                    str(n),
                    "--epochs",
                    str(epochs),
                    "--batch-size",
                    str(bs),
                    "--lr",
                    str(LR[method]),
                    "--tracking-uri",
                    args.tracking_uri,
                    "--experiment",
                    "methods-minilm",
                    "--no-progress",
                ]
                print(" ".join(cmd), flush=True)
                subprocess.run(cmd, check=False)
    print(table(args.tracking_uri, tasks, methods))


def table(uri, tasks, methods):
    runs = runs_frame(uri, "attributes.status = 'FINISHED'", ["methods-minilm"]).sort_values(
        "start_time", ascending=False
    )
    lines = [
        "| task (dev metric) | method | lr | method params | % of backbone | dev | majority baseline | "
        "seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task in tasks:
        t = get_task(task)
        split, metric = t.dev_splits[0], t.main_metric
        for method in methods:
            sel = runs[(runs["tags.task"] == task) & (runs["tags.method"] == method)]
            if sel.empty:
                continue
            r = sel.iloc[0]
            n, epochs, bs = BUDGETS[task]
            lines.append(
                f"| {task} ({metric}) | {method} | {float(r['params.lr']):g} | "
                f"{int(r['metrics.params_method']):,} | "
                f"{100 * r['metrics.params_method'] / r['metrics.params_backbone']:.3f}% | "
                f"{r[f'metrics.best_{split}_{metric}']:.4f} | {r[f'metrics.baseline_{split}_{metric}']:.4f} "
                f"| "
                f"{r['metrics.wall_seconds']:.0f} |"
            )
    lines.append(
        "\nBudget per task (first N training examples x epochs, batch 16, seed 42): "
        + "; ".join(f"{t} {BUDGETS[t][0]} x {BUDGETS[t][1]}" for t in tasks)
        + ". dev: the full GLUE/CoNLL dev split; "
        "1 seed (42); seconds: wall time of the run (model load to checkpoint)."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
