"""Make tiny Hugging Face checkpoints; runs inside the converter environment (torch + transformers).

This file is a standalone script: it imports only the standard library, numpy, torch,
transformers, tokenizers, sentencepiece and the tree's gguf-py, never the toolchain package (which
is not installed in that environment). Input: a JSON file of jobs; output: one JSON line per job
on stdout, prefixed with ``@@result ``.

Tensor names and shapes come from transformers itself (the model is instantiated on the ``meta``
device, so nothing is allocated); the values come from numpy's PCG64 seeded from the spec's hash
and the tensor's name, so the same spec and seed give byte-identical safetensors whatever the
torch version. Safetensors are written by hand (sorted names, fixed header), never with pickle.
"""

from __future__ import annotations

import hashlib
import json
import os
import runpy
import shutil
import struct
import sys
import time
import traceback
from pathlib import Path
from typing import Any

RESULT_PREFIX = "@@result "
CLAIMS = Path(__file__).parents[1] / "core" / "claims.py"  # standard library only: run by its path

# A fixed, varied corpus for SentencePiece training (words, code, digits, punctuation, non-Latin).
_CORPUS_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but "
    "have an they you were her she there been one all we their has would when if so no out up "
    "model layer tensor kernel metal apple silicon matrix vector attention head query key value "
    "token embedding norm rope expert router gate down up projection cache context batch thread "
    "def return class import self none true false while for range print len list dict str int "
    "0 1 2 3 4 5 6 7 8 9 10 42 100 256 1024 3.14 2.71 "
    "über café naïve résumé 日本 中文 한국어 русский ελληνικά עברית العربية हिन्दी"
)


def corpus_lines(n: int = 4000) -> list[str]:
    words = _CORPUS_WORDS.split()
    lines = []
    state = 12345
    for i in range(n):
        parts = []
        for _ in range(8 + i % 9):
            state = (state * 1103515245 + 12345) & 0x7FFFFFFF
            parts.append(words[state % len(words)])
        sep = ", " if i % 3 else " "
        lines.append(sep.join(parts) + (".", "?", "!", ";")[i % 4])
    return lines


# --- safetensors, written by hand ----------------------------------------------------------------
def to_bf16_bytes(values: Any) -> bytes:
    import numpy as np

    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = bits >> 16  # round to nearest even: (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16,
    rounded &= 1  # in place (a 300 MB checkpoint's temporaries took a second)
    rounded += 0x7FFF
    rounded += bits
    rounded >>= 16
    return rounded.astype("<u2").tobytes()


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], bytes]]) -> None:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name in sorted(tensors):
        dtype, shape, data = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    raw += b" " * (-len(raw) % 8)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for name in sorted(tensors):
            fh.write(tensors[name][2])
    tmp.replace(path)


def tensor_values(name: str, shape: tuple[int, ...], seed_bytes: bytes, std: float) -> Any:
    import numpy as np

    leaf = name.rsplit(".", 1)[-1]
    lname = name.lower()
    if leaf == "A_log":  # SSM decay: log(1..d_state), as real checkpoints initialise it
        d_state = shape[-1] if len(shape) >= 1 else 1
        base = np.log(np.arange(1, d_state + 1, dtype=np.float32))
        return np.broadcast_to(base, shape).copy() if len(shape) > 1 else base[: shape[0]] if shape else base
    if leaf == "D" or (len(shape) == 1 and ("norm" in lname or "ln" in lname.split(".")[-2:][0])):
        if leaf == "bias":
            return np.zeros(shape, dtype=np.float32)
        return np.ones(shape, dtype=np.float32)
    if leaf == "bias" or leaf.endswith("_bias") or "dt_bias" in leaf:
        return np.zeros(shape, dtype=np.float32)
    seed = int.from_bytes(hashlib.sha256(seed_bytes + name.encode()).digest()[:8], "little")
    rng = np.random.Generator(np.random.PCG64(seed))
    values = rng.standard_normal(size=shape, dtype=np.float32)
    values *= np.float32(std)  # in place: the same float32 products as `values * std`
    return values


# --- tokenizers ----------------------------------------------------------------------------------
def train_spm(dest: Path, vocab_size: int, cache: Path) -> dict[str, Any]:
    """SentencePiece BPE with byte fallback, trained once per vocab size and cached."""
    cached = cache / f"spm-bpe-{vocab_size}.model"
    if not cached.is_file():
        import sentencepiece as spm  # type: ignore[import-not-found]

        cache.mkdir(parents=True, exist_ok=True)
        # names of this process's own: workers running side by side may train the same size at once
        # (the training is deterministic; the last rename wins with the same bytes)
        text = cache / f"spm-corpus-{vocab_size}.{os.getpid()}.txt"
        text.write_text("\n".join(corpus_lines()) + "\n", encoding="utf-8")
        prefix = cache / f"spm-bpe-{vocab_size}.{os.getpid()}.tmp"
        spm.SentencePieceTrainer.train(
            input=str(text),
            model_prefix=str(prefix),
            vocab_size=vocab_size,
            model_type="bpe",
            byte_fallback=True,
            character_coverage=1.0,
            num_threads=1,
            shuffle_input_sentence=False,
            input_sentence_size=0,
            minloglevel=2,
        )
        Path(str(prefix) + ".model").replace(cached)
        Path(str(prefix) + ".vocab").unlink(missing_ok=True)
        text.unlink(missing_ok=True)
    shutil.copyfile(cached, dest / "tokenizer.model")
    return {"vocab_size": vocab_size, "files": ["tokenizer.model"], "bos_token_id": 1, "eos_token_id": 2}


_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def gguf_metadata(path: Path) -> dict[str, Any]:
    """The key/value pairs of a GGUF (v2/v3) file, read with ``struct``: the tree's vocab-only
    files hold 50k-token arrays, and the gguf package's reader builds a numpy view per element
    (4.4 s of each bpe:gpt-2 model's 12 s here; this reads one in 0.1 s)."""
    data = path.read_bytes()
    if data[:4] != b"GGUF":
        raise ValueError(f"{path} is not a GGUF file")
    version, _n_tensors, n_kv = struct.unpack_from("<IQQ", data, 4)
    if version not in (2, 3):
        raise ValueError(f"{path}: GGUF version {version} (2 or 3 expected)")
    pos = 24

    def string(at: int) -> tuple[str, int]:
        (n,) = struct.unpack_from("<Q", data, at)
        if at + 8 + n > len(data):
            raise ValueError(f"{path}: a string runs past the end of the file (truncated)")
        return data[at + 8 : at + 8 + n].decode("utf-8"), at + 8 + n

    def value(kind: int, at: int) -> tuple[Any, int]:
        if kind in _GGUF_SCALARS:
            fmt = "<" + _GGUF_SCALARS[kind]
            return struct.unpack_from(fmt, data, at)[0], at + struct.calcsize(fmt)
        if kind == _GGUF_STRING:
            return string(at)
        if kind == _GGUF_ARRAY:
            item, n = struct.unpack_from("<IQ", data, at)
            at += 12
            if item in _GGUF_SCALARS:
                fmt = f"<{n}{_GGUF_SCALARS[item]}"
                return list(struct.unpack_from(fmt, data, at)), at + struct.calcsize(fmt)
            items = []
            for _ in range(n):
                one, at = value(item, at)
                items.append(one)
            return items, at
        raise ValueError(f"{path}: unknown GGUF value type {kind}")

    out: dict[str, Any] = {}
    try:
        for _ in range(n_kv):
            key, pos = string(pos)
            (kind,) = struct.unpack_from("<I", data, pos)
            out[key], pos = value(kind, pos + 4)
    except struct.error as exc:
        raise ValueError(f"{path}: the header ends early (truncated): {exc}") from exc
    return out


def _gguf_vocab(tree: Path, name: str) -> dict[str, Any]:
    path = tree / "models" / f"ggml-vocab-{name}.gguf"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not in this tree")
    fields = gguf_metadata(path)

    def scalar(key: str) -> int | None:
        return int(fields[key]) if key in fields else None

    return {
        "tokens": list(fields["tokenizer.ggml.tokens"]),
        "merges": list(fields.get("tokenizer.ggml.merges", [])),
        "bos": scalar("tokenizer.ggml.bos_token_id"),
        "eos": scalar("tokenizer.ggml.eos_token_id"),
        "model": str(fields["tokenizer.ggml.model"]),
    }


def bpe_from_tree(dest: Path, tree: Path, name: str) -> dict[str, Any]:
    """A byte-level BPE tokenizer.json rebuilt from the tree's models/ggml-vocab-<name>.gguf.

    The pre-tokenizer is GPT-2's byte-level one, so the converter's pre-tokenizer hash is that of
    the original (gpt-2, starcoder, ...): only vocabularies whose original pre-tokenizer is plain
    GPT-2 byte level are listed in the specs.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors  # type: ignore[import-not-found]

    vocab = _gguf_vocab(tree, name)
    tokens = vocab["tokens"]
    ids = {tok: i for i, tok in enumerate(tokens)}
    merges = [tuple(m.split(" ", 1)) for m in vocab["merges"]]
    tok = Tokenizer(models.BPE(vocab=ids, merges=merges, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    bos = vocab["bos"] if vocab["bos"] is not None else 0
    eos = vocab["eos"] if vocab["eos"] is not None else bos
    tok.add_special_tokens([tokens[bos], tokens[eos]])
    tok.save(str(dest / "tokenizer.json"))
    (dest / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": tokens[bos],
                "eos_token": tokens[eos],
                "unk_token": None,
                "model_max_length": 4096,
                "add_prefix_space": False,
            },
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )
    return {
        "vocab_size": len(tokens),
        "files": ["tokenizer.json", "tokenizer_config.json"],
        "bos_token_id": bos,
        "eos_token_id": eos,
    }


def wordpiece_from_tree(dest: Path, tree: Path, name: str) -> dict[str, Any]:
    """BERT WordPiece vocab.txt rebuilt from the tree's ggml-vocab-<name>.gguf (▁word → word, piece → ##piece)."""
    vocab = _gguf_vocab(tree, name)
    lines = []
    for tok in vocab["tokens"]:
        if tok.startswith("[") and tok.endswith("]"):
            lines.append(tok)
        elif tok.startswith("\u2581"):
            lines.append(tok[1:])
        else:
            lines.append("##" + tok)
    (dest / "vocab.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (dest / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True}, indent=2) + "\n"
    )
    return {
        "vocab_size": len(lines),
        "files": ["vocab.txt", "tokenizer_config.json"],
        "bos_token_id": None,
        "eos_token_id": None,
    }


def make_tokenizer(dest: Path, recipe: str, tree: Path, cache: Path) -> dict[str, Any]:
    kind, _, arg = recipe.partition(":")
    if kind == "spm":
        return train_spm(dest, int(arg or 512), cache)
    if kind == "bpe":
        return bpe_from_tree(dest, tree, arg)
    if kind == "wordpiece":
        return wordpiece_from_tree(dest, tree, arg)
    if kind == "none":
        return {
            "vocab_size": int(arg) if arg else None,
            "files": [],
            "bos_token_id": None,
            "eos_token_id": None,
        }
    raise ValueError(f"unknown tokenizer recipe {recipe!r}")


# --- the model -----------------------------------------------------------------------------------
def build_config(job: dict[str, Any], tok: dict[str, Any]) -> Any:
    import transformers  # type: ignore[import-not-found]

    overrides = dict(job["config"])
    overrides.update({key: None for key in job.get("config_null", [])})
    if tok.get("vocab_size") and "vocab_size" not in job.get("explicit_vocab", []):
        key = job.get("vocab_key", "vocab_size")
        overrides[key] = max(int(tok["vocab_size"]), int(overrides.get(key, 0) or 0))
    for key in ("bos_token_id", "eos_token_id"):
        if tok.get(key) is not None and key not in job["config"]:
            overrides[key] = tok[key]
    config = transformers.AutoConfig.for_model(job["model_type"], **overrides)
    config.architectures = [job["architecture"]]
    vocab = getattr(config, job.get("vocab_key", "vocab_size"), None)
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        value = getattr(config, key, None)
        if isinstance(vocab, int) and isinstance(value, int) and value >= vocab:
            # a default special id beyond the tiny vocabulary (phi3: 32000): clamp, and say so
            setattr(config, key, 0)
            job.setdefault("notes", []).append(f"{key} {value} >= vocab {vocab}: set to 0")
    return config


def state_dict_shapes(job: dict[str, Any], config: Any) -> list[tuple[str, tuple[int, ...], bool]]:
    import torch  # type: ignore[import-not-found]
    import transformers

    cls = getattr(transformers, job.get("hf_class") or job["architecture"])
    try:
        with torch.device("meta"):
            model = cls(config)
    except NotImplementedError:  # an __init__ that computes on its parameters (apertus' xIELU)
        model = cls(config)
    tied = set()
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    seen: dict[int, str] = {}
    out = []
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            tied.add(name)
            continue
        seen[id(tensor)] = name
        out.append((name, tuple(int(d) for d in tensor.shape), tensor.dtype.is_floating_point))
    non_persistent = {n for n, _ in model.named_buffers() if n not in dict(model.state_dict())}
    return [t for t in out if t[0] not in non_persistent]


def make_model(job: dict[str, Any]) -> dict[str, Any]:
    """Make one tiny checkpoint in ``<out_dir>.partial``, renamed to ``out_dir`` when whole; a job
    that fails takes its ``.partial`` folder with it."""
    final = Path(job["out_dir"])
    dest = final.with_name(final.name + ".partial")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    try:
        return _make_model(job, final, dest)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def _make_model(job: dict[str, Any], final: Path, dest: Path) -> dict[str, Any]:
    start = time.monotonic()
    tree = Path(job["tree"])
    tok = make_tokenizer(dest, job["tokenizer"], tree, Path(job["tokenizer_cache"]))
    if job.get("added_tokens"):
        added = {str(k): int(v) for k, v in job["added_tokens"].items()}
        (dest / "added_tokens.json").write_text(json.dumps(added, indent=2, sort_keys=True) + "\n")
        tok = {**tok, "vocab_size": max(int(tok.get("vocab_size") or 0), max(added.values()) + 1)}
    config = build_config(job, tok)
    shapes = state_dict_shapes(job, config)
    seed_bytes = (job["content_hash"] + ":" + str(job["seed"])).encode()
    std = float(job.get("init_std", 0.02))
    tensors: dict[str, tuple[str, list[int], bytes]] = {}
    n_params = 0
    for name, shape, floating in shapes:
        if not floating:
            continue
        values = tensor_values(name, shape, seed_bytes, std)
        tensors[name] = ("BF16", list(shape), to_bf16_bytes(values))
        n = 1
        for d in shape:
            n *= d
        n_params += n
    write_safetensors(dest / "model.safetensors", tensors)
    config.torch_dtype = "bfloat16"
    cfg = config.to_dict()
    cfg.pop("_name_or_path", None)
    cfg.pop("transformers_version", None)
    for key, value in job.get("config_json_extra", {}).items():
        cfg[key] = value
    (dest / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    dest.rename(final)
    return {
        "status": "ok",
        "n_params": n_params,
        "n_tensors": len(tensors),
        "tokenizer": tok,
        "config": cfg,
        "seconds": time.monotonic() - start,
        "notes": job.get("notes", []),
    }


def main(argv: list[str]) -> int:
    """``worker.py JOBS [CLAIMS N]``: with CLAIMS, workers share the job list (toolchain/core/claims.py)."""
    jobs = json.loads(Path(argv[1]).read_text())
    shared = runpy.run_path(str(CLAIMS))
    claims, worker = shared["worker_args"](argv, 2)
    import transformers

    transformers.logging.set_verbosity_error()
    for index, job in enumerate(jobs):
        if not shared["claim"](claims, index, worker):
            continue
        try:
            result = make_model(job)
        except Exception as exc:
            tb = traceback.format_exc().splitlines()[-12:]
            result = {"status": "error", "error": f"{type(exc).__name__}: {exc}", "traceback": tb}
        result["name"] = job["name"]
        print(RESULT_PREFIX + json.dumps(result, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
