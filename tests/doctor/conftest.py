"""Helpers for the doctor tests: fixture logs, GGUF files written with the gguf package, the CLI."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "fixtures" / "logs" / "doctor"


@pytest.fixture
def write_gguf(tmp_path: Path) -> Callable[..., Path]:
    """Write a small llama-shaped GGUF (real tensors, tiny) with the gguf package's writer."""

    def write(
        name: str = "tiny.gguf",
        *,
        arch: str = "llama",
        n_layer: int = 2,
        n_embd: int = 64,
        n_head: int = 4,
        n_head_kv: int = 2,
        n_ff: int = 128,
        n_vocab: int = 32,
        skip_layer: int | None = None,
        extra: dict[str, int] | None = None,
    ) -> Path:
        import gguf

        path = tmp_path / name
        w = gguf.GGUFWriter(str(path), arch)
        w.add_name("tiny-test")
        w.add_block_count(n_layer)
        w.add_context_length(2048)
        w.add_embedding_length(n_embd)
        w.add_feed_forward_length(n_ff)
        w.add_head_count(n_head)
        w.add_head_count_kv(n_head_kv)
        w.add_vocab_size(n_vocab)
        for key, value in (extra or {}).items():
            w.add_uint32(key, value)
        head_dim = n_embd // n_head
        w.add_tensor("token_embd.weight", np.ones((n_vocab, n_embd), dtype=np.float16))
        for i in range(n_layer):
            if i == skip_layer:
                continue
            w.add_tensor(f"blk.{i}.attn_q.weight", np.ones((n_embd, n_embd), dtype=np.float16))
            w.add_tensor(f"blk.{i}.attn_k.weight", np.ones((n_head_kv * head_dim, n_embd), dtype=np.float16))
            w.add_tensor(f"blk.{i}.ffn_up.weight", np.ones((n_ff, n_embd), dtype=np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return path

    return write


@pytest.fixture
def doctor_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., int]]:
    """``llama-toolchain doctor …`` in process, through toolchain.cli.main."""
    import toolchain.cli as cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)

    def run(*args: str) -> int:
        return cli.main(["doctor", "--work-dir", str(tmp_path / ".toolchain"), "--no-system", *args])

    yield run
