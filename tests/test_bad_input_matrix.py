"""The bad-input matrix: CLI arguments, data files, config files, search spaces, stores and checkpoints.
Every case ends with exit 2, one line on stderr naming what is wrong, no traceback, and nothing created or
changed in the tracking store the command was pointed at."""

import shutil

import pytest

from bench.cli import main

from support import all_runs, seeded_store


@pytest.fixture(scope="module")
def world(tiny_models, glue_dir, tmp_path_factory):
    """A store holding one finished run (and its checkpoint) that every case points at."""
    root = tmp_path_factory.mktemp("matrix")
    uri = seeded_store(root / "mlflow.db")
    assert (
        main(
            [
                "run",
                "--method",
                "lora",
                "--model",
                tiny_models["bert"],
                "--task",
                "rte",
                "--data-dir",
                str(glue_dir),
                "--max-steps",
                "1",
                "--batch-size",
                "4",
                "--output-dir",
                str(root / "out"),
                "--tracking-uri",
                uri,
                "--no-progress",
            ]
        )
        == 0
    )
    (run,) = all_runs(uri)
    (adapter,) = (root / "out").glob("*/adapter")
    return {
        "uri": uri,
        "model": tiny_models["bert"],
        "roberta": tiny_models["roberta"],
        "glue": glue_dir,
        "run": run.info.run_id,
        "adapter": adapter,
        "root": root,
    }


def snapshot(uri):
    return sorted(
        (r.info.run_id, r.info.status, len(r.data.metrics), len(r.data.tags)) for r in all_runs(uri)
    )


def run_argv(w, *extra, task="rte", model=None, data=None, method="lora"):
    return [
        "run",
        "--method",
        method,
        "--model",
        model or w["model"],
        "--task",
        task,
        "--data-dir",
        str(data or w["glue"]),
        "--max-steps",
        "1",
        "--tracking-uri",
        w["uri"],
        "--output-dir",
        str(w["root"] / "out"),
        "--no-progress",
        *extra,
    ]


def without_steps(argv):
    i = argv.index("--max-steps")
    return argv[:i] + argv[i + 2 :]


def write(tmp, name, text, binary=False):
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text) if binary else path.write_text(text)
    return path


def glue_copy(w, tmp, task_dir, **files):
    """A copy of the small GLUE root with some of one task's files replaced."""
    root = tmp / "data"
    shutil.copytree(w["glue"], root)
    for name, content in files.items():
        write(
            root / task_dir,
            name.replace("_", ".") if name.endswith("_tsv") or name.endswith("_txt") else name,
            content,
            binary=isinstance(content, bytes),
        )
    return root


def space(tmp, text):
    return str(write(tmp, "space.yaml", text))


def sweep_argv(w, tmp, text):
    return [
        "sweep",
        "create",
        "--method",
        "lora",
        "--model",
        w["model"],
        "--task",
        "rte",
        "--space",
        space(tmp, text),
        "--tracking-uri",
        w["uri"],
        "--output-dir",
        str(tmp / "sweeps"),
    ]


def checkpoint_copy(w, tmp, edit):
    d = tmp / "ckpt"
    shutil.copytree(w["adapter"], d)
    edit(d)
    return ["eval", "--checkpoint", str(d)]


CASES = {
    # --- numbers and choices on the command line ---
    "epochs zero": (lambda w, t: without_steps(run_argv(w, "--epochs", "0")), "epochs=0.0 must be positive"),
    "max steps zero": (lambda w, t: run_argv(w, "--max-steps", "0"), "max_steps=0 must be at least 1"),
    "epochs nan": (lambda w, t: run_argv(w, "--epochs", "nan"), "epochs=nan must be a finite number"),
    "lr negative": (lambda w, t: run_argv(w, "--lr=-1e-3"), "lr=-0.001 must be positive"),
    "lr infinite": (lambda w, t: run_argv(w, "--lr", "inf"), "lr=inf must be a finite number"),
    "batch size zero": (lambda w, t: run_argv(w, "--batch-size", "0"), "batch_size=0 must be at least 1"),
    "max length zero": (lambda w, t: run_argv(w, "--max-length", "0"), "max_length=0 must be at least 1"),
    "max length beyond the model": (
        lambda w, t: run_argv(w, "--max-length", "100000"),
        "exceeds the 160 positions",
    ),
    "max length beyond roberta": (
        lambda w, t: run_argv(w, "--max-length", "161", model=w["roberta"]),
        "exceeds the 160 positions",
    ),
    "seed negative": (lambda w, t: run_argv(w, "--seed", "-1"), "seed=-1 must be in [0, 2**32)"),
    "warmup above one": (
        lambda w, t: run_argv(w, "--set", "warmup_ratio=1.5"),
        "warmup_ratio=1.5 must be in [0, 1]",
    ),
    "weight decay negative": (
        lambda w, t: run_argv(w, "--set", "weight_decay=-0.1"),
        "weight_decay=-0.1 must be at least 0",
    ),
    "clipping negative": (
        lambda w, t: run_argv(w, "--set", "max_grad_norm=-1"),
        "max_grad_norm=-1.0 must be at least 0",
    ),
    "eval batch zero": (
        lambda w, t: run_argv(w, "--set", "eval_batch_size=0"),
        "eval_batch_size=0 must be at least 1",
    ),
    "holdout too large": (
        lambda w, t: run_argv(w, "--set", "holdout_fraction=0.9"),
        "holdout_fraction=0.9 must be in",
    ),
    "select on test": (
        lambda w, t: run_argv(w, "--set", "select_on=test"),
        "unknown select_on 'test' (choices: dev, holdout)",
    ),
    "schedule unknown": (
        lambda w, t: run_argv(w, "--set", "lr_schedule=cosine"),
        "unknown lr_schedule 'cosine'",
    ),
    "head unknown": (
        lambda w, t: run_argv(w, "--set", "head=mlp"),
        "unknown head 'mlp' (choices: family, linear)",
    ),
    "max train samples zero": (
        lambda w, t: run_argv(w, "--max-train-samples", "0"),
        "max_train_samples=0 must be",
    ),
    "patience zero": (lambda w, t: run_argv(w, "--set", "patience=0"), "patience=0 must be at least 1"),
    "integer given a fraction": (
        lambda w, t: run_argv(w, "--set", "batch_size=2.5"),
        "batch_size=2.5 is not a valid int",
    ),
    "lora rank zero": (lambda w, t: run_argv(w, "--set", "method.r=0"), "r 0 must be at least 1"),
    "lora rank fraction": (
        lambda w, t: run_argv(w, "--set", "method.r=2.5"),
        "option r=2.5 for method lora is not a valid int",
    ),
    "lora dropout above one": (
        lambda w, t: run_argv(w, "--set", "method.dropout=1.5"),
        "dropout 1.5 must be in [0, 1)",
    ),
    "pasta dropout negative": (
        lambda w, t: run_argv(w, "--set", "method.dropout=-0.1", method="pasta"),
        "dropout -0.1 must be in [0, 1)",
    ),
    "said d too small": (lambda w, t: run_argv(w, "--set", "method.d=5", method="said"), "must exceed the"),
    "did d above the parameters": (
        lambda w, t: run_argv(w, "--set", "method.d=10000000", method="did"),
        "exceeds the",
    ),
    "diffprune sparsity above one": (
        lambda w, t: run_argv(w, "--set", "method.sparsity=1.5", method="diffprune"),
        "sparsity 1.5 must be in (0, 1]",
    ),
    "pasta layers out of range": (
        lambda w, t: run_argv(w, "--set", "method.layers=last:9", method="pasta"),
        "layers 'last:9' out of range for 2 layers",
    ),
    "ptuning prefix negative": (
        lambda w, t: run_argv(w, "--set", "method.prefix_length=-3", method="ptuning"),
        "prefix_length -3 must be at least 1",
    ),
    "method options not a mapping": (
        lambda w, t: run_argv(w, "--set", "method_options=[1]"),
        "must be a mapping",
    ),
    "preset unknown": (
        lambda w, t: run_argv(w, "--preset", "papr"),
        "unknown preset 'papr' (choices: paper)",
    ),
    # --- data files ---
    "label not a label": (
        lambda w, t: run_argv(
            w, data=glue_copy(w, t, "RTE", train_tsv="index\tsentence1\tsentence2\tlabel\n0\ta\tb\tperhaps\n")
        ),
        "label 'perhaps' is not a rte label",
    ),
    "score out of range": (
        lambda w, t: run_argv(
            w,
            task="stsb",
            data=glue_copy(
                w,
                t,
                "STS-B",
                train_tsv=(
                    "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
                    "0\tm\tf\t2012\t0\tn\tn\ta\tb\t7.5\n"
                ),
            ),
        ),
        "score '7.5' is outside stsb's range [0, 5]",
    ),
    "score not a number": (
        lambda w, t: run_argv(
            w,
            task="stsb",
            data=glue_copy(
                w,
                t,
                "STS-B",
                train_tsv=(
                    "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
                    "0\tm\tf\t2012\t0\tn\tn\ta\tb\thigh\n"
                ),
            ),
        ),
        "score 'high' is not a number",
    ),
    "short row": (
        lambda w, t: run_argv(
            w, data=glue_copy(w, t, "RTE", train_tsv="index\tsentence1\tsentence2\tlabel\n0\ta\n")
        ),
        "2 columns, expected at least 4",
    ),
    "not utf-8": (
        lambda w, t: run_argv(w, data=glue_copy(w, t, "RTE", train_tsv=b"index\tsentence1\xff\xfe\n")),
        "not UTF-8 text",
    ),
    "conll line without a tag": (
        lambda w, t: run_argv(w, task="conll2003", data=glue_copy(w, t, "conll2003", train_txt="EU\n")),
        "expected `token ... tag`",
    ),
    "conll unknown tag": (
        lambda w, t: run_argv(
            w, task="conll2003", data=glue_copy(w, t, "conll2003", train_txt="EU NNP B-NP B-FOO\n\n")
        ),
        "label 'B-FOO' is not a conll2003 label",
    ),
    "data dir missing": (lambda w, t: run_argv(w, data=t / "nowhere"), "data directory not found"),
    # --- config files ---
    "config missing": (lambda w, t: run_argv(w, "--config", str(t / "none.yaml")), "config file not found"),
    "config not yaml": (
        lambda w, t: run_argv(w, "--config", str(write(t, "c.yaml", "lr: [1, 2\n"))),
        "is not valid YAML",
    ),
    "config a list": (
        lambda w, t: run_argv(w, "--config", str(write(t, "c.yaml", "- lr\n"))),
        "must hold a mapping",
    ),
    "config unknown key": (
        lambda w, t: run_argv(w, "--config", str(write(t, "c.yaml", "learning_rate: 1\n"))),
        "unknown option 'learning_rate'",
    ),
    "config lr a word": (
        lambda w, t: run_argv(w, "--config", str(write(t, "c.yaml", "lr: fast\n"))),
        "option lr='fast' is not a valid float",
    ),
    # --- search spaces ---
    "space unknown key": (
        lambda w, t: sweep_argv(w, t, "learning_rate: {type: float, low: 1e-4, high: 1e-3}\n"),
        "bad key 'learning_rate'",
    ),
    "space low above high": (
        lambda w, t: sweep_argv(w, t, "lr: {type: float, low: 1e-3, high: 1e-4}\n"),
        "needs numbers low < high",
    ),
    "space not yaml": (lambda w, t: sweep_argv(w, t, "lr: {type: float\n"), "is not valid YAML"),
    "space empty choices": (
        lambda w, t: sweep_argv(w, t, "batch_size: {type: categorical, choices: []}\n"),
        "categorical needs a non-empty list",
    ),
    "space log at zero": (
        lambda w, t: sweep_argv(w, t, "lr: {type: float, low: 0, high: 1e-3, log: true}\n"),
        "a log scale needs low > 0",
    ),
    # --- stores ---
    "tracking scheme": (
        lambda w, t: run_argv(w, "--tracking-uri", "ftp://x/y"),
        "unsupported tracking URI scheme 'ftp'",
    ),
    "tracking dir missing": (
        lambda w, t: run_argv(w, "--tracking-uri", f"sqlite:///{t}/no/such/dir/m.db"),
        "is not a writable directory",
    ),
    "tracking file not a store": (
        lambda w, t: [
            "report",
            "table",
            "--model",
            "x",
            "--tracking-uri",
            f"sqlite:///{write(t, 'notes.db', 'my notes')}",
        ],
        "not a usable MLflow SQLite database",
    ),
    "sweep storage scheme": (
        lambda w, t: ["sweep", "ls", "--storage", "redis://x"],
        "unsupported sweep storage",
    ),
    # --- checkpoints ---
    "checkpoint without metadata": (lambda w, t: ["eval", "--checkpoint", str(t)], "not a bench checkpoint"),
    "checkpoint metadata not json": (
        lambda w, t: checkpoint_copy(w, t, lambda d: (d / "bench_adapter.json").write_text("{nope")),
        "is not valid JSON",
    ),
    "checkpoint bytes flipped": (
        lambda w, t: checkpoint_copy(
            w,
            t,
            lambda d: (d / "adapter.safetensors").write_bytes(
                (d / "adapter.safetensors").read_bytes()[:-1] + b"\x00"
            ),
        ),
        "is corrupted",
    ),
    "checkpoint weights missing": (
        lambda w, t: checkpoint_copy(w, t, lambda d: (d / "adapter.safetensors").unlink()),
        "has no adapter.safetensors",
    ),
    "eval unknown run": (
        lambda w, t: ["eval", "--run", "0123abc", "--tracking-uri", w["uri"]],
        "no MLflow run '0123abc'",
    ),
    "predict unknown split": (
        lambda w, t: [
            "predict",
            "--run",
            w["run"],
            "--tracking-uri",
            w["uri"],
            "--split",
            "dev",
            "--out-dir",
            str(t / "p"),
        ],
        "no unlabelled split 'dev'",
    ),
    # --- other commands ---
    "ui port out of range": (
        lambda w, t: ["ui", "--port", "70000", "--tracking-uri", w["uri"]],
        "--port 70000 must be between 1 and 65535",
    ),
    "params unknown model": (lambda w, t: ["params", "--model", "bert-huge"], "unknown model 'bert-huge'"),
    "intrinsic no seeds": (
        lambda w, t: ["intrinsic", "--task", "rte", "--seeds", "0", "--tracking-uri", w["uri"]],
        "--seeds 0",
    ),
    "report unknown layout": (
        lambda w, t: ["report", "table", "--model", "x", "--layout", "nope", "--tracking-uri", w["uri"]],
        "unknown layout 'nope'",
    ),
}


# Cases the structural rules above do not reach: values a search space can draw, YAML booleans as numbers.
CASES |= {
    "space draws an invalid value": (
        lambda w, t: sweep_argv(w, t, "method.r: {type: int, low: 0, high: 8}\n"),
        "bad key 'method.r': value 0 is not valid",
    ),
    "space choice out of range": (
        lambda w, t: sweep_argv(w, t, "warmup_ratio: {type: categorical, choices: [0.1, 2]}\n"),
        "value 2 is not valid",
    ),
    "boolean as a number": (
        lambda w, t: run_argv(w, "--set", "batch_size=true"),
        "batch_size=True is not a valid int",
    ),
    "list as a name": (lambda w, t: run_argv(w, "--set", "experiment=[a, b]"), "is not a valid str"),
}

# A grid point the model cannot take (FourierFT's 5,000 coefficients in a 32 x 32 weight): refused before
# the grid's parent run exists.
CASES |= {
    "intrinsic point that does not fit": (
        lambda w, t: [
            "intrinsic",
            "--model",
            w["model"],
            "--task",
            "rte",
            "--data-dir",
            str(w["glue"]),
            "--methods",
            "fourierft",
            "--points",
            "2",
            "--seeds",
            "1",
            "--tracking-uri",
            w["uri"],
            "--output-dir",
            str(t / "out"),
        ],  # fmt: skip
        "intrinsic grid point fourierft at n_frequency=5000",
    ),
}

CASES |= {
    "space choice the model cannot take": (  # C3A's derived space: block sizes up to 128 on a 32-wide model
        lambda w, t: [
            "sweep",
            "create",
            "--method",
            "c3a",
            "--model",
            w["model"],
            "--task",
            "rte",
            "--tracking-uri",
            w["uri"],
            "--output-dir",
            str(t / "sweeps"),
        ],  # fmt: skip
        "search space: method.block_size=64 does not fit model",
    ),
}


def model_copy(w, tmp, damage):
    """A copy of the tiny model directory with its weights file damaged."""
    d = tmp / "model"
    shutil.copytree(w["model"], d)
    damage(d / "model.safetensors")
    return str(d)


CASES |= {
    "truncated weights file": (
        lambda w, t: run_argv(w, model=model_copy(w, t, lambda p: p.write_bytes(p.read_bytes()[:1000]))),
        "could not load model",
    ),
    "garbage weights file": (
        lambda w, t: run_argv(w, model=model_copy(w, t, lambda p: p.write_bytes(b"not safetensors"))),
        "could not load model",
    ),
}

# Experiment names that would place artifacts outside the store's root (MLflow: <root>/<experiment name>).
CASES |= {
    f"experiment {name!r}": (
        lambda w, t, name=name: run_argv(w, "--experiment", name),
        f"experiment name {name!r} is not allowed",
    )
    for name in ("../../escape", "/tmp/abs", "a/b", "..", "~user", "a\\b", "tab\tname", " ")
} | {
    "sweep experiment escape": (
        lambda w, t: [
            *sweep_argv(w, t, "lr: {type: float, low: 1.0e-4, high: 1.0e-3}\n"),
            "--experiment",
            "../x",
        ],
        "experiment name '../x' is not allowed",
    ),
}


# every third case in the fast subset (a sample of each group: they are listed by kind), all in the full suite
@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=() if i % 3 == 0 else pytest.mark.slow) for i, c in enumerate(CASES)]
)
def test_bad_input(world, tmp_path, capsys, case):
    make_argv, expected = CASES[case]
    before = snapshot(world["uri"])
    argv = make_argv(world, tmp_path)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, (case, err)
    assert err.count("\n") == 1 and err.startswith("bench: error: ") and "Traceback" not in err, err
    assert expected in err, err
    assert snapshot(world["uri"]) == before  # nothing created, closed or half-written in the store
