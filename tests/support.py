"""Helpers the tests share (fixtures live in conftest.py): tiny models of every family, small data files,
MLflow run listings and sweep set-ups. Test modules import from here, never from each other."""

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
import yaml

from sweeps import driver

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WORDS = (
    "the a an cat dog bird sat ran flew on in under mat log tree is was not very good bad happy sad "
    "john paris london acme corp said that it this and or but new york times"
).split()


def tiny_tokenizer(kind: str, directory: Path):
    """A real tokenizer of the family's kind, trained on WORDS: WordPiece with [CLS]/[SEP] (BERT, ELECTRA,
    DeBERTa's template), byte-level BPE with <s> a </s></s> b </s> (RoBERTa, XLM-R's template), or byte-level
    BPE with [CLS]/[SEP] and no token types (ModernBERT)."""
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import BertTokenizer, PreTrainedTokenizerFast, RobertaTokenizer

    if kind == "wordpiece":
        vocab = [
            "[PAD]",
            "[UNK]",
            "[CLS]",
            "[SEP]",
            "[MASK]",
            *WORDS,
            *"abcdefghijklmnopqrstuvwxyz",
            *(f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"),
            ".",
            ",",
            "'",
            '"',
            "-",
        ]
        return BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    bpe = ByteLevelBPETokenizer()
    if kind == "bpe-pair-sep":
        bpe.train_from_iterator(
            [" ".join(WORDS)] * 20,
            vocab_size=400,
            min_frequency=1,
            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        )
        vocab_file, merges_file = bpe.save_model(str(directory))
        return RobertaTokenizer(vocab=vocab_file, merges=merges_file)
    assert kind == "bpe-cls", kind
    bpe.train_from_iterator(
        [" ".join(WORDS)] * 20,
        vocab_size=400,
        min_frequency=1,
        special_tokens=["[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"],
    )
    cls, sep = bpe.token_to_id("[CLS]"), bpe.token_to_id("[SEP]")
    bpe.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        unk_token="[UNK]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "attention_mask"],
    )


def build_tiny_model(directory: Path, family) -> Path:
    """A 2-layer, hidden-32 encoder of the family (a bench.families.Family, or its name) with a real tokenizer
    of the family's kind, saved like a hub model."""
    import torch
    from transformers import AutoConfig, AutoModel

    from bench.families import families

    fam = families()[family] if isinstance(family, str) else family
    torch.manual_seed(0)
    directory.mkdir(parents=True, exist_ok=True)
    tok = tiny_tokenizer(fam.tiny_tokenizer, directory)
    ids = {
        f"{name}_token_id": tok.convert_tokens_to_ids(getattr(tok, f"{name}_token"))
        for name in ("pad", "bos", "eos", "cls", "sep")
        if getattr(tok, f"{name}_token", None)
    }
    defaults = AutoConfig.for_model(fam.model_types[0])
    dropouts = {
        k: 0.1 for k in ("hidden_dropout_prob", "attention_probs_dropout_prob") if hasattr(defaults, k)
    }
    config = AutoConfig.for_model(
        fam.model_types[0],
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        **(dropouts | ids | fam.tiny_config),
    )
    model = AutoModel.from_config(config)
    tok.model_max_length = 128
    tok.save_pretrained(directory)
    model.save_pretrained(directory)
    return directory


def write_tsv(path: Path, rows, bom=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join("\t".join(map(str, r)) for r in rows) + "\n"
    path.write_text(("\ufeff" if bom else "") + text, encoding="utf-8")


def sentence(i: int) -> str:
    return " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(3 + i % 6))


_TEMPLATE: list[Path] = []


def seeded_store(path: Path) -> str:
    """A SQLite MLflow store at `path`, copied from one migrated once per test process (a fresh store costs
    MLflow's ~40 migrations, a few seconds each time): the same empty store a first run would create."""
    if not _TEMPLATE:
        from mlflow.tracking import MlflowClient

        template = Path(tempfile.mkdtemp(prefix="bench-store-")) / "template.db"
        MlflowClient(f"sqlite:///{template}").search_experiments()
        _TEMPLATE.append(template)
    if not path.exists():
        shutil.copyfile(_TEMPLATE[0], path)
    return f"sqlite:///{path}"


def all_runs(uri):
    from mlflow.tracking import MlflowClient

    c = MlflowClient(uri)
    exps = [e.experiment_id for e in c.search_experiments()]
    return c.search_runs(exps) if exps else []


POSTGRES = os.environ.get("BENCH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def postgres_or_skip():
    import sqlalchemy

    try:
        with sqlalchemy.create_engine(POSTGRES, connect_args={"connect_timeout": 3}).connect():
            return POSTGRES
    except Exception as e:
        pytest.skip(f"no PostgreSQL at {POSTGRES}: {type(e).__name__}")


def space_file(tmp_path, space):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return str(path)


def make_study(tiny_models, glue_dir, tmp_path, storage, trials, space, task="rte", pruner="median", **base):
    base = {
        "data_dir": str(glue_dir),
        "output_dir": str(tmp_path / "runs"),
        "batch_size": 8,
        "tracking_uri": seeded_store(tmp_path / "mlflow.db"),
        **base,
    }
    return driver.create(
        "full",
        tiny_models["bert"],
        task,
        base,
        space_file(tmp_path, space),
        storage,
        trials,
        seeds_final=2,
        pruner=pruner,
        name=f"test-{uuid.uuid4().hex[:8]}",
        echo=lambda *a: None,
    )


def worker(name, storage, tmp_path, heartbeat=1):
    cmd = [
        sys.executable,
        "-m",
        "bench.cli",
        "sweep",
        "work",
        name,
        "--heartbeat",
        str(heartbeat),
        "--output-dir",
        str(tmp_path / "runs"),
    ] + (["--storage", storage] if storage else [])
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def child_runs(tmp_path, study):
    from mlflow.tracking import MlflowClient

    c = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exps = [e.experiment_id for e in c.search_experiments()]
    return [
        r
        for r in c.search_runs(exps)
        if r.data.tags.get("study") == study.study_name and r.data.tags.get("phase") != "study"
    ]


SPACE = {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True},
    "epochs": {"type": "categorical", "choices": [1, 2]},
}
