"""Credentials in any URL or connection-string form are redacted by one function, everywhere bench writes
or prints: MLflow params, tags, config.yaml, the checkpoint's JSON, stdout, errors and study attributes."""

import json
import os
import random
import string

import pytest

from bench.redact import MASK, redact

from support import all_runs, seeded_store

SECRET = "S3cr3t-pw"


@pytest.mark.parametrize(
    "text, kept",
    [
        (f"postgresql://bob:{SECRET}@db.example:5432/mlflow", "postgresql://bob:***@db.example:5432/mlflow"),
        (f"postgresql+psycopg://:{SECRET}@db/x", "postgresql+psycopg://:***@db/x"),
        (f"mysql+pymysql://bob:{SECRET}%40x:y@h/db", "mysql+pymysql://bob:***@h/db"),
        (f"postgresql://bob@db/mlflow?password={SECRET}", "postgresql://***@db/mlflow?password=***"),
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
        ("postgresql://bob@db/mlflow", "postgresql://***@db/mlflow"),  # a user alone may be a token: masked
        ("max_length=128 tokenizer fingerprint", "max_length=128 tokenizer fingerprint"),
    ],
)
def test_redact_url_shapes(text, kept):
    assert redact(text) == kept and (SECRET not in redact(text))


# Every shape a URL or DSN can carry a credential in, and the characters each lets a secret hold unencoded.
PRINTABLE = "".join(chr(c) for c in range(33, 127)) + " "
USERINFO_SECRET = PRINTABLE  # SQLAlchemy reads user:password@ up to the host's '@': anything but a newline
TOKEN_SECRET = string.ascii_letters + string.digits + "-._~%!$*+"  # a user name without ':' '@' '/' '?' '#'
QUERY_SECRET = string.ascii_letters + string.digits + "-._~%!$*+:/?@="  # a query value up to '&' '#' ';' ','
QUOTED_SECRET = PRINTABLE.replace("'", "").replace("\\", "")  # libpq's 'quoted value'
SCHEMES = ["postgresql", "postgresql+psycopg", "mysql+pymysql", "mssql+pyodbc", "http", "https"]
KEYS = ["password", "sslpassword", "token", "access_token", "api_key", "apikey", "secret", "X-Sig"]
SHAPES = [  # (template with {s} = secret, {scheme}, {key}; alphabet of the secret)
    ("{scheme}://bob:{s}@db.example:5432/mlflow", USERINFO_SECRET),
    ("{scheme}://:{s}@10.0.0.1/x", USERINFO_SECRET),
    ("{scheme}://bob:{s}@h1:5432,h2:5433/db?sslmode=require", USERINFO_SECRET),
    ("{scheme}://{s}@github.example/org/repo", TOKEN_SECRET),
    ("{scheme}://db/x?user=bob&{key}={s}&sslmode=require", QUERY_SECRET),
    ("{scheme}://db/x?{key}={s}", QUERY_SECRET),
    ("{scheme}://h/#{key}={s}", QUERY_SECRET),
    ("host=db user=bob {key}={s} dbname=x", QUERY_SECRET.replace("=", "")),
    ("host=db user=bob {key}='{s}' dbname=x", QUOTED_SECRET),
    ("Driver={{x}};Server=h;UID=bob;{key}={s};Database=d", QUERY_SECRET.replace("=", "")),
]


def generated_cases(n=400):
    rng = random.Random(0)
    for i in range(n):
        template, alphabet = SHAPES[i % len(SHAPES)]
        if alphabet is USERINFO_SECRET:  # unencoded '@' or spaces (with both, no parser can tell the host)
            alphabet = alphabet.replace(rng.choice(["@", " "]), "")
        secret = "".join(rng.choice(alphabet) for _ in range(rng.randint(6, 24)))
        scheme, key = rng.choice(SCHEMES), rng.choice(KEYS)
        wrap = rng.choice(["{}", "tracking URI {} is unreachable (timed out)", "storage '{}': no such db"])
        quoted = "'{s}'" in template
        masked = template.replace("'{s}'", "{s}") if quoted else template
        yield (
            wrap.format(template.format(s=secret, scheme=scheme, key=key)),
            wrap.format(masked.format(s=MASK, scheme=scheme, key=key)),
            secret,
        )


def test_redact_masks_every_generated_shape_and_character():
    """400 secrets drawn from the characters each shape allows (unencoded '#', '/', '?', '@', ':', spaces,
    quotes), in every shape, alone or inside an error line: the output is the input with exactly the secret
    replaced by ***."""
    for text, expected, _ in generated_cases():
        assert redact(text) == expected, (text, redact(text))


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
    from sweeps.study import study_tracking_uri

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
    assert "MLFLOW_TRACKING_URI" not in os.environ  # given to the sweep's code, not put in the environment
    assert main(["sweep", "status", "redact", "--storage", storage]) == 0
    out = capsys.readouterr()
    attrs = optuna.load_study(study_name="redact", storage=storage).user_attrs
    assert SECRET not in out.out + out.err and SECRET not in json.dumps(attrs)
    parent = MlflowClient(uri).get_run(attrs["mlflow_parent_run_id"])
    assert SECRET not in json.dumps(parent.data.params) + json.dumps(parent.data.tags)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(BenchError, match="holds a credential"):
        study_tracking_uri(attrs)
    assert study_tracking_uri(attrs, uri) == uri
    with pytest.raises(BenchError, match="holds a credential"):  # another store's URI is not the study's
        study_tracking_uri(attrs, uri.replace("bench_redact_test", "other"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert study_tracking_uri(attrs) == uri
