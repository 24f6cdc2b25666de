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
