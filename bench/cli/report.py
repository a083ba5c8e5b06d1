"""`bench report table | budget | intrinsic | pareto | params | heads`: tables and figures from tracked
runs (the work is in reports/)."""

from __future__ import annotations

from bench.cli.run import add_params_options

FORMATS = ["text", "md", "latex", "csv", "json"]


def add_parsers(sub) -> None:
    p = sub.add_parser("report", help="tables from tracked runs: results (paper layout) and parameter counts")
    rs = p.add_subparsers(dest="report_command", required=True)
    q = rs.add_parser("table", help="methods x tasks, mean ± std over seeds, best in bold")
    q.add_argument("--model", required=True, help="the model tag of the runs (as given to bench run)")
    q.add_argument("--tasks", default=None, help="comma-separated (default: all with runs)")
    q.add_argument("--methods", default=None, help="comma-separated (default: all with runs)")
    q.add_argument("--format", default="md", choices=FORMATS)
    q.add_argument(
        "--published",
        action="store_true",
        help="the paper table of this model (reports/layouts): its columns' metrics and its published "
        "rows beside ours; the published rows alone if the store has no runs of the model",
    )
    q.add_argument(
        "--layout",
        default=None,
        help="a paper table layout by name (pasta-table2, pasta-table3, "
        "pasta-bert-base, pasta-conll); implies its columns",
    )
    q.add_argument(
        "--all-runs", action="store_true", help="use every FINISHED run, not only sweeps' final seeds"
    )
    q.add_argument("--standalone", action="store_true", help="LaTeX: a complete document for pdflatex")
    q.add_argument(
        "--stats",
        action="store_true",
        help="mark the methods a Welch t-test over seeds cannot tell from each column's best "
        "(Holm-corrected, "
        "alpha 0.05; fewer than 3 seeds: not tested, said so)",
    )
    q.add_argument(
        "--exclude-degenerate",
        action="store_true",
        help="leave out runs flagged degenerate (collapsed to one class, no better than the trivial "
        "baseline); "
        "by default they are counted and marked",
    )
    q.add_argument("--tracking-uri", default=None)
    q = rs.add_parser(
        "budget",
        help="expected best dev score within k tuning trials and k trials' compute, per method, from sweeps' "
        "trials (figure + table)",
    )
    q.add_argument("--model", required=True, help="the model tag of the runs (as given to bench sweep)")
    q.add_argument("--task", required=True)
    q.add_argument("--format", default="md", choices=FORMATS)
    q.add_argument("--out-dir", default="figures", help="where the figure goes (default: figures)")
    q.add_argument("--tracking-uri", default=None)
    q = rs.add_parser(
        "intrinsic", help="d90 per method, curves (PNG + PDF) and tables from `bench intrinsic` runs"
    )
    q.add_argument("--model", default=None, help="one model's curves and d90 table")
    q.add_argument(
        "--models",
        default=None,
        help="comma-separated: one figure of d90 against model size, with the "
        "published SAID/DID d90 of Aghajanyan et al. as markers",
    )
    q.add_argument("--task", required=True)
    q.add_argument(
        "--metric",
        default=None,
        help="e.g. dev_accuracy (default: the task's curve metric, see `bench tasks`; MRPC: accuracy)",
    )
    q.add_argument("--format", default="md", choices=FORMATS)
    q.add_argument(
        "--out-dir", default="figures", help="where the plot and tables are written (default: figures)"
    )
    q.add_argument("--standalone", action="store_true", help="LaTeX: a complete document for pdflatex")
    q.add_argument("--tracking-uri", default=None)
    q = rs.add_parser(
        "pareto",
        help="per task, the dev metric against %%Param, training time or peak memory, with "
        "the Pareto frontier (PNG + PDF and a table)",
    )
    q.add_argument("--model", required=True, help="the model tag of the runs (as given to bench run)")
    q.add_argument("--tasks", default=None, help="comma-separated (default: all with runs)")
    q.add_argument(
        "--x",
        default="params",
        choices=["params", "time", "memory"],
        help="the cost axis: %%Param (method params / backbone), training seconds, or peak memory "
        "(CUDA allocated; on a CPU the process's peak RSS) (default: params)",
    )
    q.add_argument(
        "--all-runs",
        action="store_true",
        help="every FINISHED run, one point per configuration (default: sweeps' final runs)",
    )
    q.add_argument("--format", default="md", choices=FORMATS, help="the table's format (default: md)")
    q.add_argument("--out-dir", default="figures", help="where the figure goes (default: figures)")
    q.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)",
    )
    q = rs.add_parser("params", help="parameter-count table (same as `bench params`)")
    add_params_options(q, "latex")
    q.set_defaults(func="params:cmd_params")
    q = rs.add_parser(
        "heads", help="compare two `bench heads` analyses head by head (pretrained vs tuned, two models)"
    )
    q.add_argument("first", help="the JSON file of one analysis")
    q.add_argument("second", help="the JSON file of the other")
    q.set_defaults(func="heads:cmd_compare")
    for name in ("table", "budget", "intrinsic", "pareto"):
        rs.choices[name].set_defaults(func="report:cmd_report")

    p = sub.add_parser(
        "heads", help="vertical / diagonal / heterogeneous attention heads (PASTA's motivation)"
    )
    p.add_argument("--model", default=None, help="a pretrained model (or give --run / --checkpoint)")
    p.add_argument("--task", default=None, help="whose dev inputs are fed (default with --run: the run's)")
    p.add_argument("--data-dir", default=None)
    p.add_argument(
        "--samples", type=int, default=100, help="dev inputs, each fed alone, unpadded (default: 100)"
    )
    p.add_argument("--threshold", type=float, default=0.9, help="share of query tokens (default: 0.9)")
    p.add_argument(
        "--definition",
        default="reference",
        choices=["reference", "special-tokens"],
        help="reference (default): the PASTA authors' plot_attentions.py, every query token, a hit on the "
        "first or last token; special-tokens: a hit on any special token, special queries left out",
    )
    p.add_argument(
        "--count-special-queries",
        action="store_true",
        help="with --definition special-tokens: also count the special tokens' own queries",
    )
    p.add_argument("--run", default=None, help="analyse a tuned model: an MLflow run id")
    p.add_argument(
        "--checkpoint", default=None, metavar="DIR", help="analyse a tuned model: an adapter directory"
    )
    p.add_argument(
        "--ablate",
        default=None,
        help="vertical: mask the vertical heads and re-evaluate, beside as many random non-vertical heads",
    )
    p.add_argument("--draws", type=int, default=5, help="random draws for --ablate (default: 5)")
    p.add_argument(
        "--out-dir", default="figures/heads", help="where CSV, JSON, PNG and PDF go (default: figures/heads)"
    )
    p.add_argument("--tracking-uri", default=None)
    p.set_defaults(func="heads:cmd_heads")
