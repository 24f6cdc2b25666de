"""Classify a log into the catalog's classes, streaming: memory stays bounded for a log of any size.

The log is read in blocks (``BLOCK`` bytes, cut at the last newline). In each block the catalog's
keywords are searched with ``bytes.find`` (C speed); only the lines holding one are decoded and
matched against the patterns. A line longer than ``MAX_LINE`` is cut for matching and evidence; a
"line" with no newline in ``BLOCK`` bytes (binary data) is scanned in pieces. What is kept per
pattern is bounded: a count, the first ``KEEP_FIRST`` lines, the last one and the last captured
values. Binary garbage is decoded with replacement characters and reported as such; an empty
log gives no findings and says so.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

from .catalog import CLASSES, PATTERNS, FailureClass, Pattern
from .files import read_chunks
from .findings import SEVERITY_RANK, Evidence, Finding, ObservedBy, Severity
from .kernel_missing import explain

BLOCK = 4 << 20
MAX_LINE = 2000
KEEP_FIRST = 3
TAIL_LINES = 20
MAX_EVIDENCE = 8
_BINARY_SNIFF = 64 << 10
# Line prefixes llama.cpp's own logging writes (the ``__func__`` of LLAMA_LOG_* / GGML_LOG_* in
# src/llama-model-loader.cpp, src/llama-context.cpp, src/llama-model.cpp, ggml/src/ggml-backend*.cpp,
# ggml/src/ggml-metal/*.m, ggml/src/gguf.cpp, common/common.cpp; llm_load_ in older trees). A log
# holding none of them and no line of the catalog is not a llama.cpp log: doctor says so (issue #32
# M) instead of "no problem found".
LLAMA_LOG_MARKERS = (
    b"llama_model_loader: ",
    b"llama_model_load",
    b"llama_context: ",
    b"llama_kv_cache",
    b"llama_new_context_with_model",
    b"llama_fit_params",
    b"load_tensors: ",
    b"print_info: ",
    b"system_info: ",
    b"llm_load_",
    b"ggml_metal_",
    b"ggml_backend_",
    b"ggml_vulkan",
    b"ggml_cuda_init",
    b"GGML_ASSERT",
    b"gguf_init_from_file",
    b"common_init_from_params",
    b"load_backend: ",
)


@dataclass(frozen=True)
class RunParams:
    """The run's parameters, as given to doctor (the same flags llama.cpp takes)."""

    n_ctx: int | None = None  # -c
    n_gpu_layers: int | None = None  # -ngl
    cache_type_k: str | None = None  # -ctk
    cache_type_v: str | None = None  # -ctv
    n_ubatch: int | None = None  # -ub
    flash_attn: bool | None = None  # -fa


@dataclass(frozen=True)
class LogScan:
    """What was read: size, line count, whether it looked like text, facts and the last lines."""

    source: str
    bytes: int
    lines: int
    binary: bool
    empty: bool
    facts: Mapping[str, Mapping[str, str]]  # pattern id -> last captured groups
    matches: Mapping[str, int]  # pattern id -> matching lines (after predicates)
    tail: tuple[str, ...]
    # a line of llama.cpp's own logging or of the catalog was seen (False: not a llama.cpp log)
    recognised: bool = True

    def fact(self, pattern_id: str, group: str = "value") -> str | None:
        return self.facts.get(pattern_id, {}).get(group)


@dataclass
class _Hits:
    count: int = 0
    first: list[Evidence] = field(default_factory=list)
    last: Evidence | None = None

    def add(self, ev: Evidence) -> None:
        self.count += 1
        if len(self.first) < KEEP_FIRST:
            self.first.append(ev)
        else:
            self.last = ev

    def sample(self) -> list[Evidence]:
        return [*self.first, *([self.last] if self.last else [])]


# --- predicates named by catalog patterns (``Pattern.when``) ------------------------------------
def _many_splits(m: re.Match[str], params: RunParams) -> bool:
    return int(m.group("value")) >= MANY_SPLITS


def _device_mostly_used(m: re.Match[str], params: RunParams) -> bool:
    total, free = int(m.group("total")), int(m.group("free"))
    return total > 0 and free / total < DEVICE_FREE_FRACTION


def _gpu_layers_requested(m: re.Match[str], params: RunParams) -> bool:
    return params.n_gpu_layers != 0


# A graph split per layer or more means ops of every layer run on another device.
MANY_SPLITS = 10
# Less than this share of a device's memory free at start-up: someone else holds it.
DEVICE_FREE_FRACTION = 0.25

PREDICATES: Mapping[str, Callable[[re.Match[str], RunParams], bool]] = {
    "many_splits": _many_splits,
    "device_mostly_used": _device_mostly_used,
    "gpu_layers_requested": _gpu_layers_requested,
}


def needles(patterns: Iterable[Pattern]) -> tuple[bytes, ...]:
    """The smallest set of keywords such that every pattern's keywords contain one of them."""
    kws = {k for p in patterns for k in p.keywords}
    return tuple(sorted(k.encode() for k in kws if not any(o != k and o in k for o in kws)))


class LogScanner:
    """Feed blocks of bytes; read the facts, hits and tail when done. Bounded state."""

    def __init__(self, params: RunParams | None = None, patterns: Iterable[Pattern] | None = None) -> None:
        self.params = params or RunParams()
        self.patterns = tuple(patterns if patterns is not None else PATTERNS.values())
        self._needles = needles(self.patterns)
        self.hits: dict[str, _Hits] = {}
        self.facts: dict[str, dict[str, str]] = {}
        self.bytes = 0
        self.newlines = 0
        self.binary = False
        self.nonblank = False
        self._carry = b""
        self._last_byte = b""
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._sniffed = 0
        self._control = 0
        self.recognised = False

    # -- input --------------------------------------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.bytes += len(chunk)
        self._last_byte = chunk[-1:]
        self._sniff(chunk)
        buf = self._carry + chunk if self._carry else chunk
        cut = buf.rfind(b"\n")
        if cut == -1:
            if len(buf) < BLOCK:
                self._carry = buf
                return
            self._region(buf)  # a newline-less run of data: scan it in pieces
            self._carry = b""
            return
        self._region(buf[: cut + 1])
        self._carry = buf[cut + 1 :]

    def close(self) -> None:
        if self._carry:
            self._region(self._carry)
            self._carry = b""

    def _sniff(self, chunk: bytes) -> None:
        if self._sniffed >= _BINARY_SNIFF:
            return
        part = chunk[: _BINARY_SNIFF - self._sniffed]
        self._sniffed += len(part)
        self._control += sum(1 for b in part if b < 0x20 and b not in (0x09, 0x0A, 0x0D, 0x1B))
        self._control += part.count(b"\xff") + part.count(b"\xfe")
        self.binary = self._control > max(8, self._sniffed // 20)

    # -- one region: whole lines (or a piece of a very long line) -----------------------------
    def _region(self, region: bytes) -> None:
        if not self.nonblank and region.strip():
            self.nonblank = True
        if not self.recognised:
            self.recognised = any(marker in region for marker in LLAMA_LOG_MARKERS)
        # window start -> (line start, window end); a line longer than MAX_LINE is looked at
        # around each hit only
        spans: dict[int, tuple[int, int]] = {}
        half = MAX_LINE // 2
        for needle in self._needles:
            pos = region.find(needle)
            while pos != -1:
                start = region.rfind(b"\n", 0, pos) + 1
                end = region.find(b"\n", pos)
                end = len(region) if end == -1 else end
                if end - start > MAX_LINE:
                    w_start, w_end = max(start, pos - half), min(end, pos + half)
                else:
                    w_start, w_end = start, end
                spans.setdefault(w_start, (start, w_end))
                pos = region.find(needle, w_end)
        base = self.newlines + 1
        counted_to, counted = 0, 0
        for w_start in sorted(spans):
            line_start, w_end = spans[w_start]
            counted += region.count(b"\n", counted_to, line_start)
            counted_to = line_start
            self._line(_decode(region[w_start:w_end]), base + counted)
        self.newlines += region.count(b"\n")
        self._remember_tail(region)

    def _remember_tail(self, region: bytes) -> None:
        piece = region[-(TAIL_LINES * 300) :]
        for raw in piece.splitlines()[-TAIL_LINES:]:
            text = _decode(raw)
            if text.strip():
                self._tail.append(text)

    def _line(self, text: str, lineno: int) -> None:
        for pattern in self.patterns:
            if not any(k in text for k in pattern.keywords):
                continue
            m = pattern.compiled.search(text)
            if m is None:
                continue
            if m.groupdict():
                self.facts[pattern.id] = {k: v for k, v in m.groupdict().items() if v is not None}
            if pattern.when and not PREDICATES[pattern.when](m, self.params):
                continue
            self.hits.setdefault(pattern.id, _Hits()).add(
                Evidence(text=text.strip(), line=lineno, pattern=pattern.id)
            )

    # -- results ------------------------------------------------------------------------------
    def result(self, source: str) -> LogScan:
        lines = self.newlines + (1 if self.bytes and self._last_byte != b"\n" else 0)
        return LogScan(
            source=source,
            bytes=self.bytes,
            lines=lines,
            binary=self.binary,
            empty=not self.nonblank,
            facts={k: dict(v) for k, v in self.facts.items()},
            matches={k: v.count for k, v in sorted(self.hits.items())},
            tail=tuple(self._tail),
            recognised=self.recognised or bool(self.hits) or bool(self.facts),
        )


def _decode(raw: bytes) -> str:
    text = raw[:MAX_LINE].decode("utf-8", "replace").replace("\x00", "")
    return text.rstrip("\r\n")


# --- from hits to findings ------------------------------------------------------------------------
def _confidence(weights: Iterable[float]) -> float:
    miss = 1.0
    for w in weights:
        miss *= 1.0 - w
    return round(min(0.99, 1.0 - miss), 2)


def _worst(severities: Iterable[Severity]) -> Severity:
    return min(severities, key=lambda s: SEVERITY_RANK[s])


def findings_from_hits(
    hits: Mapping[str, list[Evidence] | tuple[Evidence, ...]],
    counts: Mapping[str, int],
    *,
    observed_by: ObservedBy,
    classes: Iterable[FailureClass] = CLASSES,
) -> list[Finding]:
    """Apply ``explained_by`` and the classes' combinations; one finding per class with a problem."""
    seen = set(hits)
    kept = {pid: ev for pid, ev in hits.items() if not (set(PATTERNS[pid].explained_by) & seen)}
    out: list[Finding] = []
    for cls in classes:
        mine = [p for p in cls.patterns if p.id in kept]
        combos = [c for c in cls.combinations if all(r in kept for r in c.requires)]
        symptoms = [p for p in mine if p.severity != "info"]
        observations = [p for p in mine if p.severity == "info" and p.weight > 0]
        if not symptoms and not combos and not observations:
            continue
        severity = _worst([*(p.severity for p in symptoms), *(c.severity for c in combos)] or ["info"])
        weights = [p.weight for p in mine] + [c.weight for c in combos]
        shown = [p for p in mine if p.weight > 0 or any(p.id in c.requires for c in combos)]
        evidence = sorted((e for p in shown for e in kept[p.id]), key=lambda e: e.line or 0)
        if len(evidence) > MAX_EVIDENCE:
            evidence = [*evidence[: MAX_EVIDENCE - 1], evidence[-1]]
        reasons = [c.reason for c in combos]
        total = sum(counts.get(p.id, 0) for p in shown)
        if not reasons:
            lead = symptoms[0] if symptoms else observations[0]
            example = kept[lead.id][0].text if kept[lead.id] else lead.id
            # the line itself (not its repr): JSON keeps it exact, the console neutralises escapes
            quoted = example if len(example) <= 160 else f"{example[:160]}…"
            reasons = [f"{total} matching line(s), e.g. “{quoted}”"]
        finding = cls.finding(
            severity=severity,
            confidence=_confidence(weights),
            summary="; ".join(reasons),
            observed_by=observed_by,
            evidence=tuple(evidence),
            matches=total,
        )
        refine = REFINERS.get(cls.id)
        out.append(refine(finding) if refine else finding)
    return out


_MISSING_KERNEL = re.compile(r"Function (kernel_\w+) was not found in the library")


def _kernel_missing(finding: Finding) -> Finding:
    """Name the kernel, the feature that asks for it, whose gap it is and the fix for that cause."""
    kernels = list(
        dict.fromkeys(m.group(1) for e in finding.evidence for m in _MISSING_KERNEL.finditer(e.text))
    )
    if not kernels:
        return finding
    parts, fixes = [], []
    for k in kernels[:3]:
        feature, whose, fix, source = explain(k)
        parts.append(f"{k} is not in the loaded library: asked for by {feature}; {whose} (facts: {source})")
        fixes.append(fix)
    return replace(finding, summary="; ".join(parts), fix=" / ".join(dict.fromkeys(fixes)))


# Classes whose finding is refined from its evidence (the missing kernel's name says why).
REFINERS: Mapping[str, Callable[[Finding], Finding]] = {"kernel-missing": _kernel_missing}


def classify_stream(
    stream: BinaryIO,
    *,
    source: str = "-",
    params: RunParams | None = None,
    observed_by: ObservedBy = "log",
    block: int = BLOCK,
) -> tuple[LogScan, list[Finding]]:
    scanner = LogScanner(params)
    for chunk in read_chunks(stream, block):
        scanner.feed(chunk)
    scanner.close()
    scan = scanner.result(source)
    hits = {pid: h.sample() for pid, h in scanner.hits.items()}
    return scan, findings_from_hits(hits, scan.matches, observed_by=observed_by)


def classify_log(
    path: Path, *, params: RunParams | None = None, observed_by: ObservedBy = "log"
) -> tuple[LogScan, list[Finding]]:
    """Classify the log at ``path`` (OSError propagates: the CLI turns it into a typed error)."""
    with path.open("rb") as fh:
        return classify_stream(fh, source=str(path), params=params, observed_by=observed_by)


def classify_text(
    text: str, *, params: RunParams | None = None, observed_by: ObservedBy = "log"
) -> tuple[LogScan, list[Finding]]:
    import io

    return classify_stream(io.BytesIO(text.encode()), source="<text>", params=params, observed_by=observed_by)
