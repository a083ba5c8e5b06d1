"""Credentials in any URL or connection-string form are redacted by one function, everywhere bench writes
or prints: MLflow params, tags, config.yaml, the checkpoint's JSON, stdout, errors and study attributes."""

import json

import pytest

from bench.redact import redact

from support import all_runs, seeded_store

SECRET = "S3cr3t-pw"


@pytest.mark.parametrize(
    "text, kept",
    [
        (f"postgresql://bob:{SECRET}@db.example:5432/mlflow", "postgresql://bob:***@db.example:5432/mlflow"),
        (f"postgresql+psycopg://:{SECRET}@db/x", "postgresql+psycopg://:***@db/x"),
        (f"mysql+pymysql://bob:{SECRET}%40x:y@h/db", "mysql+pymysql://bob:***@h/db"),
        (f"postgresql://bob@db/mlflow?password={SECRET}", "postgresql://bob@db/mlflow?password=***"),
        (
            f"postgresql://db/x?user=bob&password={SECRET}&sslmode=require",
            "postgresql://db/x?user=bob&password=***&sslmode=require",
        ),
        (
            f"postgresql://db/x?sslmode=require&sslpassword={SECRET}",
            "postgresql://db/x?sslmode=require&sslpassword=***",
        ),
        (f"host=db user=bob password={SECRET} dbname=x", "host=db user=bob password=*** dbname=x"),
        (f"https://mlflow.example/api?token={SECRET}&x=1", "https://mlflow.example/api?token=***&x=1"),
        (f"https://h/?api_key={SECRET}", "https://h/?api_key=***"),
        (f"https://h/#access_token={SECRET}", "https://h/#access_token=***"),
        (f"http://alice:{SECRET}@127.0.0.1:5000", "http://alice:***@127.0.0.1:5000"),
        (f"postgresql://bob:{SECRET}@h1:5432,h2:5433/db", "postgresql://bob:***@h1:5432,h2:5433/db"),
        (
            f"tracking URI mysql://u:{SECRET}@h/db is unreachable (x)",
            "tracking URI mysql://u:***@h/db is unreachable (x)",
        ),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
        ("postgresql://bob@db/mlflow", "postgresql://bob@db/mlflow"),
        ("max_length=128 tokenizer fingerprint", "max_length=128 tokenizer fingerprint"),
    ],
)
def test_redact_url_shapes(text, kept):
    assert redact(text) == kept and (SECRET not in redact(text))


def test_run_with_a_password_in_a_query_parameter_stores_it_nowhere(
    tiny_models, glue_dir, tmp_path, capsys, monkeypatch
):
    """A SQLite URI cannot carry a password, so the credential rides in another logged value."""
    from mlflow.tracking import MlflowClient

    from bench.cli import main

    uri = seeded_store(tmp_path / "mlflow.db")
    data_dir = f"{glue_dir}"
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
                data_dir,
                "--max-steps",
                "1",
                "--batch-size",
                "4",
                "--tracking-uri",
                uri,
                "--output-dir",
                str(tmp_path / "o"),
                "--set",
                f"tags={{source: 'postgresql://db/x?password={SECRET}'}}",
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    (run,) = all_runs(uri)
    c = MlflowClient(uri)
    texts = [out, json.dumps(run.data.params), json.dumps(run.data.tags)]
    texts.append(c.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path / "a")))
    texts[-1] = open(texts[-1]).read()
    meta = next((tmp_path / "o").glob("*/adapter/bench_adapter.json")).read_text()
    for text in [*texts, meta]:
        assert SECRET not in text
    assert "password=***" in run.data.tags["source"]


@pytest.mark.slow
def test_study_created_with_a_password_keeps_it_nowhere(tiny_models, glue_dir, tmp_path, monkeypatch, capsys):
    """PostgreSQL here trusts local connections, so a URI with any password connects: the study's attributes,
    its MLflow container run and `sweep status` must not show it, and a worker needs it given again."""
    import optuna
    import sqlalchemy
    from mlflow.tracking import MlflowClient

    from bench.cli import main
    from bench.errors import BenchError
    from sweeps.driver import study_tracking_uri

    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    try:
        engine = sqlalchemy.create_engine(
            admin, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
        )
        with engine.connect() as conn:
            conn.exec_driver_sql("DROP DATABASE IF EXISTS bench_redact_test")
            conn.exec_driver_sql("CREATE DATABASE bench_redact_test")
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"no PostgreSQL: {type(e).__name__}")
    uri = f"postgresql://postgres:{SECRET}@127.0.0.1:5432/bench_redact_test"
    storage = f"sqlite:///{tmp_path / 'sweeps.db'}"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert (
        main(
            [
                "sweep",
                "create",
                "--method",
                "full",
                "--model",
                tiny_models["bert"],
                "--task",
                "rte",
                "--data-dir",
                str(glue_dir),
                "--tracking-uri",
                uri,
                "--storage",
                storage,
                "--trials",
                "1",
                "--name",
                "redact",
            ]
        )
        == 0
    )
    assert main(["sweep", "status", "redact", "--storage", storage]) == 0
    out = capsys.readouterr()
    attrs = optuna.load_study(study_name="redact", storage=storage).user_attrs
    assert SECRET not in out.out + out.err and SECRET not in json.dumps(attrs)
    parent = MlflowClient(uri).get_run(attrs["mlflow_parent_run_id"])
    assert SECRET not in json.dumps(parent.data.params) + json.dumps(parent.data.tags)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(BenchError, match="holds a credential"):
        study_tracking_uri(attrs)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert study_tracking_uri(attrs) == uri
