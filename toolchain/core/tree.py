"""What a llama.cpp tree contains, as data: its programs (with the names they had over time), the
source files the toolchain reads, and the formats of the log lines it parses.

Beside :mod:`toolchain.profiles` (what each backend is): every stage that looks for a program,
opens a source file or parses a log line of the tree takes the name or the format from here, so
a rename upstream is one edit. Names are listed newest first; the first one a build (or a tree's
CMake targets) has is the one used.
"""

from __future__ import annotations

import re
from pathlib import Path

# --- programs ------------------------------------------------------------------------------------
# The program that runs a prompt: `main` until mid-2024, then `llama-cli`; `llama-completion`
# since 2025 (`llama-cli` then needs the server libraries).
RUNNERS = ("llama-completion", "llama-cli", "main")
# The smallest program that loads a model and runs a prompt (no chat, no sampling options).
SIMPLE_RUNNER = "llama-simple"
# Test and tool programs (tests/ and tools/ targets).
BACKEND_OPS = ("test-backend-ops",)
EXPORTERS = ("test-export-graph-ops", "export-graph-ops", "llama-export-graph-ops")
ARCHS = ("test-llama-archs",)
LOGITS = ("llama-debug",)  # --save-logits: the full last-token logits as float32
EVAL_CALLBACK = ("llama-eval-callback", "eval-callback")  # prints sampled values of every node
QUANTIZE = ("llama-quantize", "quantize")
# upstream's memory fit (tools/fit-params, PR #16653; trees since late 2025)
FIT_PARAMS = ("llama-fit-params",)

# --- source paths (relative to the tree's root) ------------------------------------------------
METAL_DIR = Path("ggml/src/ggml-metal")
CONVERT_SCRIPT = Path("convert_hf_to_gguf.py")
BACKEND_OPS_SOURCE = Path("tests/test-backend-ops.cpp")


def has_metal_sources(tree: Path) -> bool:
    return (tree / METAL_DIR).is_dir()


# --- log formats -------------------------------------------------------------------------------
# (a backend's own device lines are the profile's: toolchain.profiles.DeviceLog)
# ggml-backend.cpp with GGML_SCHED_DEBUG: "## SPLIT #3: BLAS # 1 inputs"
SCHED_SPLIT = re.compile(r"## SPLIT #(?P<n>\d+): (?P<backend>[^\s#]+)")
# The environment that makes the scheduler print each graph split and its backend (with -v).
SCHED_DEBUG_ENV = {"GGML_SCHED_DEBUG": "2"}
# How many characters of a backend's name the scheduler's debug lines keep ([%5.5s]: "Vulkan0" -> "Vulka").
SCHED_NAME_WIDTH = 5
# "Available devices:" and its rows, of common_print_available_devices (common/arg.cpp).
DEVICE_LIST_HEADER = "Available devices:"
DEVICE_ROW = re.compile(
    r"^\s+(?P<name>[^\s:]+): (?P<desc>.*?) \((?P<total>\d+) MiB, (?P<free>\d+) MiB free\)\s*$"
)
# llama-model.cpp: "load_tensors: offloaded 13/13 layers to GPU".
OFFLOADED = re.compile(r"offloaded (?P<n>\d+)/(?P<m>\d+) layers to GPU")
# llama-model-loader.cpp and llama_perf_context_print (0.3.20 and 0.3.36): the run really loaded
# the model, or evaluated tokens; an exit 0 without either proves nothing.
MODEL_RAN = re.compile(r"loaded meta data with \d+ key-value pairs and \d+ tensors|: +eval time = ")
# What llama.cpp prints when an encoder model gets the prompt in more than one ubatch.
ENCODER_UBATCH_ABORT = "encoder requires n_ubatch >= n_tokens"


def has_option(help_text: str, option: str) -> bool:
    """Whether a program's ``--help`` text (common/arg.cpp's usage) lists ``option``."""
    return re.search(rf"(^|[\s,]){re.escape(option)}([\s,=]|$)", help_text, re.M) is not None


# --- how the toolchain runs the tree's programs off any backend ----------------------------------
# The reference (and the load check) runs the plain CPU kernels: the CPU's extra buffer types (AMX
# on recent Xeons, repacked layouts on ARM/x86) are host-specific, and on this project's Linux VMs
# the AMX path dies with SIGILL (`tilezero` in tinygemm_kernel_amx) and its buffers make the
# scheduler abort on MLA models (`GGML_ASSERT(*cur_backend_id != -1)`). Our ground truth must not
# depend on them. The CPU column's e2e run is that reference: the extra buffer types are not
# covered by the matrix (on an AMX host they are a finding of their own, outside it).
# (common/arg.cpp: `--repack/--no-repack`, env LLAMA_ARG_REPACK; older trees ignore it.)
PLAIN_CPU_ENV = {"LLAMA_ARG_REPACK": "false"}

# The context the graph-op exporter builds its graphs for (common/arg.cpp `-c`). Without it the
# exporter takes the context the GGUF says the model was trained with (common.h: `n_ctx = 0`), and
# that is whatever the converter wrote: 4096 for most of our tiny models, but 2**20 for the RWKV,
# Mamba and Mamba2 classes and for granitehybrid without RoPE (convert_hf_to_gguf.py: "arbitrary
# value; for those who use the default"). granitehybrid's FLASH_ATTN_EXT case then has a 1M-row KV
# that test-backend-ops did not finish in 120 s on a CPU: a hang of our making, not the tree's.
# One context for every model, 256 tokens (the context llama.cpp pads to, and the one the tree's
# own test-llama-archs models have): the prompt graph is one 256-token ubatch, the KV 256 rows.
# The kernels are the ones a longer context runs (matrix-matrix products, flash attention over a
# KV of whole blocks); what a longer context changes is memory, which `doctor` checks, not which
# ops and types the backend takes.
EXPORT_CTX = 256
EXPORT_ARGS = ("-c", str(EXPORT_CTX))


# --- reading the tree's C/C++/Objective-C sources ------------------------------------------------
def strip_comments(text: str) -> str:
    """Blank out comments and string/char literal contents, keeping offsets and newlines."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:j]))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append(c + " " * (min(j, n) - i - 1) + (c if j < n else ""))
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)
