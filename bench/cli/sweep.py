"""`bench sweep ...` (Optuna studies) and `bench intrinsic` (intrinsic-dimension grids)."""

from __future__ import annotations


def add_sweep_parsers(sub) -> None:
    p = sub.add_parser("sweep", help="Optuna sweeps: create, work, launch, status, finalize, ls, run")
    ss = p.add_subparsers(dest="sweep_command", required=True)

    def storage_opts(q):
        q.add_argument(
            "--storage",
            default=None,
            help="Optuna storage URL, e.g. postgresql://host/db for many "
            "machines (default: sqlite:///<output-dir>/sweeps.db)",
        )
        q.add_argument(
            "--output-dir", default=None, help="where runs and the default storage live (default: runs)"
        )

    for cmd in ("create", "run"):
        q = ss.add_parser(cmd, help="create a study" if cmd == "create" else "create + work + finalize here")
        q.add_argument("--method", required=True)
        q.add_argument("--model", default="minilm")
        q.add_argument("--task", required=True)
        q.add_argument(
            "--space", default=None, help="search-space YAML (default: sweeps/spaces/<method>.yaml)"
        )
        q.add_argument("--trials", type=int, default=20, help="COMPLETE trials in the budget (default: 20)")
        q.add_argument(
            "--budget-seconds",
            type=float,
            default=None,
            help="a compute budget: stop once the trials' wall seconds add up to it (--trials then caps the "
            "count); give every method the same to compare them at equal compute",
        )
        q.add_argument("--seeds-final", type=int, default=3, help="seeds for finalize (default: 3)")
        q.add_argument(
            "--search-seed", type=int, default=1, help="the seed of every search trial (default: 1)"
        )
        q.add_argument("--pruner", default="median", help="median | halving | none (default: median)")
        q.add_argument(
            "--resume-anyway",
            action="store_true",
            help="resume an existing study of this name even though its stored options differ from the "
            "given ones (the stored ones win)",
        )
        q.add_argument(
            "--preset",
            default=None,
            help="centre the search space on a paper preset (see `bench "
            "presets`); its other values are fixed for every trial",
        )
        q.add_argument("--name", default=None, help="study name (default: method-model-task-<space hash>)")
        q.add_argument("--data-dir", default=None)
        q.add_argument("--tracking-uri", default=None)
        q.add_argument("--experiment", default=None)
        q.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="fix an option for every trial (it leaves the search space), e.g. --set epochs=2",
        )
        storage_opts(q)
        if cmd == "run":
            q.add_argument("--heartbeat", type=int, default=10)
            q.add_argument("--force", action="store_true", help="rerun configurations that already finished")
    q = ss.add_parser("work", help="run trials of a study until its budget is complete")
    q.add_argument("study")
    q.add_argument(
        "--tracking-uri",
        default=None,
        help="the study's MLflow URI when it holds a credential (studies store it redacted)",
    )
    q.add_argument(
        "--n-trials", type=int, default=None, help="stop after this many trials (default: until done)"
    )
    q.add_argument(
        "--heartbeat", type=int, default=10, help="seconds; a trial 3 beats late is retried (default: 10)"
    )
    q.add_argument("--force", action="store_true", help="rerun configurations that already finished")
    q.add_argument(
        "--workers",
        type=int,
        default=1,
        help="workers in processes of this command, sharing its GPU or splitting its cores (default: 1)",
    )
    storage_opts(q)
    q = ss.add_parser(
        "launch", help="start N workers through submitit: a SLURM array job, or local processes"
    )
    q.add_argument("study")
    q.add_argument("--workers", type=int, required=True, help="how many `bench sweep work` jobs")
    q.add_argument(
        "--executor",
        default="local",
        choices=["local", "slurm"],
        help="local: processes on this machine; slurm: an array job via sbatch (default: local)",
    )
    q.add_argument("--gpus-per-worker", type=int, default=0, help="GPUs each worker gets (default: 0)")
    q.add_argument(
        "--mem-gb", type=float, default=None, help="memory per worker, GB (default: the scheduler's)"
    )
    q.add_argument(
        "--timeout-min", type=int, default=24 * 60, help="time limit per worker, minutes (default: 1440)"
    )
    q.add_argument("--partition", default=None, help="SLURM partition (default: the cluster's)")
    q.add_argument("--heartbeat", type=int, default=10)
    q.add_argument(
        "--no-wait", action="store_true", help="return after submitting (default: wait and report)"
    )
    q.add_argument(
        "--tracking-uri",
        default=None,
        help="the study's MLflow URI when it holds a credential "
        "(passed to the workers through their environment)",
    )
    storage_opts(q)
    q = ss.add_parser("status", help="trials, states, best so far, budget used")
    q.add_argument("study")
    storage_opts(q)
    q = ss.add_parser("finalize", help="re-run the best configuration on K seeds (only these feed tables)")
    q.add_argument("study")
    q.add_argument("--tracking-uri", default=None, help="the study's MLflow URI when it holds a credential")
    q.add_argument("--seeds", type=int, default=None, help="K (default: the study's --seeds-final)")
    q.add_argument("--force", action="store_true", help="rerun seeds that already finished")
    storage_opts(q)
    q = ss.add_parser("ls", help="list studies in a storage")
    storage_opts(q)
    for (
        name,
        q,
    ) in ss.choices.items():  # status and ls read the study alone: their handler loads no model code
        q.set_defaults(func="study:cmd_study" if name in ("status", "ls") else "sweep:cmd_sweep")


def add_parsers(sub) -> None:
    add_sweep_parsers(sub)
    p = sub.add_parser("intrinsic", help="intrinsic-dimension curves: each method's size knob on a log grid")
    p.add_argument("--model", default="minilm")
    p.add_argument("--task", required=True)
    p.add_argument(
        "--methods",
        default=None,
        help="comma-separated; anchors (full FT, head only) are always added (default: every method "
        "with a size knob, see `bench methods`)",
    )
    p.add_argument(
        "--seeds", type=int, default=3, help="seeds per point, the same for every method (default: 3)"
    )
    p.add_argument("--points", type=int, default=5, help="knob values per method (default: 5)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="point runs at a time, each in its own process (default: 1); several small-model "
        "runs share one GPU",
    )
    p.add_argument(
        "--lr-grid",
        default=None,
        help="per-method learning rates, e.g. 'pasta=1e-3,3e-3;full=2e-5' "
        "(default: each method's default lr); best mean per point wins",
    )
    p.add_argument("--data-dir", default=None)
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--experiment", default=None)
    p.add_argument("--output-dir", default=None)
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="options for every run, e.g. --set epochs=2 --set max_train_samples=2000",
    )
    p.set_defaults(func="sweep:cmd_intrinsic")
