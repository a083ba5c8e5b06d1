"""`bench tasks`: the tasks bench offers, listed (nothing heavy is imported)."""

from __future__ import annotations

from bench.tasks import all_tasks


def cmd_tasks(args) -> int:
    print(f"{'task':<11}{'kind':<16}{'input':<7}{'labels':<8}{'main metric':<13}{'dev splits':<28}metrics")
    for t in all_tasks().values():
        print(
            f"{t.name:<11}{t.kind:<16}{t.layout:<7}{t.num_labels:<8}{t.main_metric:<13}"
            f"{', '.join(t.dev_splits):<28}{', '.join(t.metrics)}"
        )
    print(
        "\nbest epoch = highest main metric on the first dev split (earliest epoch wins ties); "
        "glue_score = mean of F1+accuracy (MRPC, QQP) or Pearson+Spearman (STS-B), else the main metric"
    )
    return 0
