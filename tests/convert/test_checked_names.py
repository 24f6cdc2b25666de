"""A kept verdict restored from the GGUF cache names the model it is asked for, not the one it was made for."""

from __future__ import annotations

import json
from pathlib import Path

from toolchain.convert.checked import validated
from toolchain.core.hashing import sha256_file
from toolchain.models.build import TinyModel


def test_a_kept_verdict_of_another_spec_with_the_same_content_takes_our_names(tmp_path: Path) -> None:
    """A shrunk config equal to a built-in spec gives the same checkpoint: the cache's verdict was
    written for "llama"; asked for "from-config-…" it must say "from-config-…" (the real-configs
    test found no result for 8 of its specs on a cold cache)."""
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 60)
    kept = {
        "architecture": "llama",
        "hf_architecture": "LlamaForCausalLM",
        "type": "f16",
        "status": "pass",
        "loaded_by": "test-export-graph-ops",
    }
    record = {"sha256": sha256_file(gguf), "source": "c0ffee", "loader": "", "result": kept}
    (tmp_path / "model.gguf.check.json").write_text(json.dumps(record))
    model = TinyModel("from-config-0a795ad87e2e", "LlamaForCausalLM", "llama", tmp_path, "c0ffee", 0, "ok")
    result = validated(model, gguf, "f16", 0.0, cached=True, loader=None)
    assert (result.architecture, result.status, result.cached) == ("from-config-0a795ad87e2e", "pass", True)
