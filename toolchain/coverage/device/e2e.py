"""End to end: decode with the tree's own programs on a backend and on the CPU, and compare.

- Logits: ``llama-debug --save-logits`` writes the last prompt token's logits as float32
  (``llamacpp-<model stem>.bin``); compared with the normalised MSE of upstream's
  test-llama-archs (``sum((a-b)^2) / sum(a^2)``, threshold 1e-4). Trees without llama-debug:
  ``llama-eval-callback`` prints every node's first/last values and sum — the output's printed
  values are compared (a sample, said so in the evidence), and the first node whose sum differs
  is named.
- Tokens: the runner decodes a few tokens greedily (``--temp 0 -s 1``); random-weight logits are
  nearly flat, so a token flip with matching logits is a near-tie (noted, not a failure).
- Fallback: with ``GGML_SCHED_DEBUG=2`` and ``-v`` the scheduler prints every split and the
  backend of every node (``node # 12 (   MUL_MAT): ffn_up-0 (  16K) [BLAS  …]``); llama_context
  prints ``splits = pp / tg``; ``… not supported, set to disabled`` when flash attention (or
  another fused op) cannot stay on the layer's device.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ...core.tree import SCHED_SPLIT

NMSE_THRESHOLD = 1e-4
# Quantized weights: the CPU quantizes activations to q8 for its dot products while other backends
# may dequantize the weights instead; the comparison then allows test-backend-ops' MUL_MAT
# tolerance (max_nmse_err 5e-4) rather than the f32 models' 1e-4 of test-llama-archs.
NMSE_THRESHOLD_QUANTIZED = 5e-4
# Above 5e-4 on quantized weights, a cell whose ops all matched the CPU one by one (the `test`
# column) is attributed to that drift up to this bound; beyond it, or with a failing op, it is wrong.
NMSE_GROSS = 1e-2
FLOAT_TYPES = frozenset({"f32", "f16", "bf16"})


def nmse_threshold(weight_type: str) -> float:
    return NMSE_THRESHOLD if weight_type.lower() in FLOAT_TYPES else NMSE_THRESHOLD_QUANTIZED


PROMPT = (
    "The quick brown fox jumps over the lazy dog while the tiny model keeps counting tokens: "
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty, and then it starts again from the beginning."
)

_NODE = re.compile(
    r"node #\s*(?P<i>\d+) \(\s*(?P<op>[A-Z0-9_]+)\):\s*(?P<name>.{1,20}?) \(\s*[\d.]+\s*[A-Za-z]*\) "
    r"\[\s*(?P<backend>[^\s\]]+)"
)
_SPLITS_CTX = re.compile(r"(?:graph splits|splits) = (?P<pp>\d+)(?: / (?P<tg>\d+))?")
_DISABLED = re.compile(
    r"(?P<what>[\w ]+?) not supported, set to disabled|flash_attn is not compatible.*forcing off"
)
_TOKENS_IN = re.compile(
    r"Token ids \((?P<n>\d+)\)|prompt eval time = .*?/\s*(?P<m>\d+) tokens|number of input tokens = (?P<k>\d+)"
)
_CB_HEAD = re.compile(r"^\S+:\s+(?P<name>\S+) = \((?P<type>\w+)\)\s+(?P<op>\S+)\(")
_FLOAT = re.compile(r"-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|-?nan|-?inf", re.I)
_SUM = re.compile(r"^\s*sum = (?P<v>\S+)")


@dataclass(frozen=True)
class SchedReport:
    nodes_by_backend: dict[str, int] = field(default_factory=dict)
    cpu_ops: dict[str, int] = field(default_factory=dict)  # op -> nodes the CPU ran (inputs excluded)
    cpu_nodes: tuple[str, ...] = ()  # "OP name" of CPU nodes, first few
    splits_pp: int | None = None
    splits_tg: int | None = None
    split_backends: tuple[str, ...] = ()
    disabled: tuple[str, ...] = ()  # "Flash Attention not supported, set to disabled" …
    prompt_tokens: int | None = None


def parse_sched(lines: Iterable[str], *, keep: int = 12) -> SchedReport:
    by_backend: Counter[str] = Counter()
    cpu_ops: Counter[str] = Counter()
    cpu_nodes: list[str] = []
    split_backends: set[str] = set()
    disabled: list[str] = []
    pp = tg = tokens = None
    for line in lines:
        m = _NODE.search(line)
        if m:
            b = m["backend"]
            by_backend[b] += 1
            name = m["name"].strip()
            if b.upper().startswith("CPU") and not name.startswith(("inp_", "leaf_")):
                cpu_ops[m["op"]] += 1
                if len(cpu_nodes) < keep and f"{m['op']} {name}" not in cpu_nodes:
                    cpu_nodes.append(f"{m['op']} {name}")
            continue
        s = SCHED_SPLIT.search(line)
        if s:
            split_backends.add(s["backend"])
            continue
        c = _SPLITS_CTX.search(line)
        if c and ("llama_context" in line or "graph" in line):
            pp = int(c["pp"])
            tg = int(c["tg"]) if c["tg"] else pp
            continue
        d = _DISABLED.search(line)
        if d:
            disabled.append(line.split(": ", 1)[-1].strip())
            continue
        t = _TOKENS_IN.search(line)
        if t and tokens is None:
            tokens = int(t["n"] or t["m"] or t["k"])
    return SchedReport(
        dict(by_backend),
        dict(cpu_ops),
        tuple(cpu_nodes),
        pp,
        tg,
        tuple(sorted(split_backends)),
        tuple(dict.fromkeys(disabled)),
        tokens,
    )


def nmse(reference: Sequence[float], other: Sequence[float]) -> float:
    """Normalised MSE as upstream's test-llama-archs: sum((a-b)^2) / sum(a^2). NaN/inf: inf."""
    if len(reference) != len(other) or not reference:
        return math.inf
    num = den = 0.0
    for a, b in zip(reference, other, strict=True):
        if not (math.isfinite(a) and math.isfinite(b)):
            return math.inf
        num += (a - b) ** 2
        den += a * a
    if den == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return num / den


def read_logits(path: Path) -> tuple[float, ...]:
    import array

    data = array.array("f")
    raw = path.read_bytes()
    data.frombytes(raw[: len(raw) - len(raw) % 4])
    return tuple(data)


@dataclass(frozen=True)
class NodeSample:
    name: str
    op: str
    values: tuple[float, ...]
    sum: float | None


def parse_eval_callback(lines: Iterable[str]) -> list[NodeSample]:
    """Blocks of llama-eval-callback (common_debug_cb_eval / ggml_debug): head, values, ``sum =``."""
    out: list[NodeSample] = []
    cur: tuple[str, str] | None = None
    values: list[float] = []
    for line in lines:
        h = _CB_HEAD.match(line.strip())
        if h and " = {" in line:
            cur, values = (h["name"], h["op"]), []
            continue
        if cur is None:
            continue
        s = _SUM.match(line)
        if s:
            try:
                total: float | None = float(s["v"])
            except ValueError:
                total = None
            out.append(NodeSample(cur[0], cur[1], tuple(values), total))
            cur = None
            continue
        if "[" in line or "]" in line or "," in line:
            values.extend(float(v) for v in _FLOAT.findall(line.replace("...", " ")))
    return out


def first_divergence(reference: Sequence[NodeSample], other: Sequence[NodeSample], rel: float = 1e-2) -> str:
    """The first node (in the other run's order) whose sum differs from the reference's."""
    ref = {n.name: n for n in reference}
    for node in other:
        r = ref.get(node.name)
        if r is None or r.sum is None or node.sum is None:
            continue
        a, b = r.sum, node.sum
        if math.isnan(a) and math.isnan(b):
            continue
        scale = max(abs(a), abs(b), 1e-3)
        if not (math.isfinite(a) and math.isfinite(b)) or abs(a - b) / scale > rel:
            return f"{node.op} {node.name}: sum {b:g} vs CPU {a:g}"
    return ""


def output_sample(nodes: Sequence[NodeSample]) -> NodeSample | None:
    """The last ``result_output`` that holds values (a micro-batch without outputs prints an empty one)."""
    return next((n for n in reversed(nodes) if n.name == "result_output" and n.values), None)
