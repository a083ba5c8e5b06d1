"""Files bench wrote itself are verified when read back: a damaged tokenisation-cache entry is rebuilt with
a warning (later runs do not crash), and an adapter checkpoint with flipped bytes is refused in one line."""

import pytest

from bench.cli import main
from bench.data import load_examples
from bench.encoding import cached_encode, encode
from bench.tasks import get_task


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_damaged_cache_entry_is_rebuilt(tiny_models, glue_dir, tmp_path, capsys, damage):
    from transformers import AutoTokenizer

    task = get_task("rte")
    tok = AutoTokenizer.from_pretrained(tiny_models["bert"])
    ex = load_examples(task, "train", str(glue_dir))
    fresh = cached_encode(task, "train", ex, tok, 32, tmp_path)
    (entry,) = (tmp_path / "encoded").glob("*.npz")
    raw = entry.read_bytes()
    entry.write_bytes(
        {
            "truncate": raw[: len(raw) // 2],
            "flip": raw[:200] + bytes([raw[200] ^ 0xFF]) + raw[201:],
            "garbage": b"not a cache entry",
        }[damage]
    )
    again = cached_encode(task, "train", ex, tok, 32, tmp_path)
    assert "is damaged" in capsys.readouterr().err
    expected = encode(task, ex, tok, 32)
    assert all(again[k] == fresh[k] if k != "labels" else (again[k] == expected[k]).all() for k in fresh)
    cached_encode(task, "train", ex, tok, 32, tmp_path)  # the rebuilt entry loads quietly
    assert "damaged" not in capsys.readouterr().err


def test_flipped_checkpoint_bytes_are_refused(tiny_models, glue_dir, tmp_path, tracking_uri, capsys):
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
                str(tmp_path / "out"),
                "--tracking-uri",
                tracking_uri,
                "--no-progress",
            ]
        )
        == 0
    )
    (adapter,) = (tmp_path / "out").glob("*/adapter")
    weights = adapter / "adapter.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-5] ^= 0x01  # one bit of one weight: safetensors itself would load it silently
    weights.write_bytes(bytes(raw))
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(adapter)]) == 2
    err = capsys.readouterr().err
    assert "is corrupted" in err and err.count("\n") == 1 and "Traceback" not in err
