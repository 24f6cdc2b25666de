"""Run a GitHub Actions job's `run:` steps on this machine the way a runner would.

What a runner does for each step, reproduced: the `if:` condition (default `success()`), the
`${{ … }}` expressions in `run`, `env` and `with` (inputs with their declared defaults, step
outputs, the matrix's first row, the runner context), `bash --noprofile --norc -eo pipefail` on the
script, and the files a step talks back through: `GITHUB_OUTPUT` (step outputs, `name=value` and
`name<<DELIM` blocks), `GITHUB_ENV` (environment for later steps), `GITHUB_STEP_SUMMARY`,
`GITHUB_PATH`, with `GITHUB_ACTIONS=true`. `uses:` steps are not run: each is listed in the result
as skipped, and the caller prepares what they would have (checkout, python, caches).

Only the expression syntax the workflows use is understood; anything else raises
:class:`Unsupported` so that a workflow edit with new syntax fails the rehearsal instead of being
guessed at.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from toolchain.core.proc import run_group


class Unsupported(Exception):
    """A workflow construct the rehearsal does not model."""


# --- expressions ---------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op>==|!=|<=|>=|<|>|&&|\|\||!|\(|\)|,)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_*][A-Za-z0-9_-]*)*))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise Unsupported(f"expression syntax at {text[pos:]!r} in {text!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def truthy(value: Any) -> bool:
    return value not in (None, False, 0, "", 0.0)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _number(value: Any) -> float:
    """GitHub's coercion for ordering comparisons: numbers, numeric strings, booleans; else NaN."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).strip() or 0)
    except ValueError:
        return float("nan")


@dataclass
class Context:
    inputs: dict[str, Any]
    matrix: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    needs: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: bool = False
    runner: dict[str, str] = field(
        default_factory=lambda: {"os": "Linux", "arch": "X64", "temp": "/tmp", "name": "rehearsal"}
    )
    github: dict[str, str] = field(default_factory=lambda: {"run_id": "1", "event_name": "workflow_dispatch"})

    def lookup(self, path: str) -> Any:
        head, *rest = path.split(".")
        roots: dict[str, Any] = {
            "inputs": self.inputs,
            "matrix": self.matrix,
            "steps": self.steps,
            "env": self.env,
            "runner": self.runner,
            "github": self.github,
            "needs": self.needs,
            "vars": {},
        }
        if head not in roots:
            raise Unsupported(f"context {head!r} in {path!r}")
        value: Any = roots[head]
        for part in rest:
            value = value.get(part) if isinstance(value, dict) else None
        return value

    def call(self, name: str, args: list[Any]) -> Any:
        functions: dict[str, Callable[..., Any]] = {
            "always": lambda: True,
            "success": lambda: not self.failed,
            "failure": lambda: self.failed,
            "cancelled": lambda: False,
            "fromJSON": lambda s: json.loads(s),
            "toJSON": lambda v: json.dumps(v),
            "contains": lambda hay, needle: (
                needle in hay if isinstance(hay, list) else str(needle).lower() in _text(hay).lower()
            ),
            "startsWith": lambda s, p: _text(s).lower().startswith(_text(p).lower()),
            "format": lambda f, *a: re.sub(r"\{(\d+)\}", lambda m: _text(a[int(m.group(1))]), f),
        }
        if name not in functions:
            raise Unsupported(f"function {name}()")
        return functions[name](*args)


class _Parser:
    def __init__(self, text: str, ctx: Context) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.ctx = ctx
        self.text = text

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise Unsupported(f"expected {value!r} in {self.text!r}")
        self.i += 1
        return tok

    def parse(self) -> Any:
        value = self.or_()
        if self.peek() is not None:
            raise Unsupported(f"trailing tokens in {self.text!r}")
        return value

    def _chain(self, op: str, operand: Callable[[], Any], right_if: Callable[[Any], bool]) -> Any:
        """``operand (op operand)*`` left to right: the right side where ``right_if(left)``, else the left."""
        value = operand()
        while self.peek() == ("op", op):
            self.take()
            right = operand()
            value = right if right_if(value) else value
        return value

    def or_(self) -> Any:
        return self._chain("||", self.and_, lambda left: not truthy(left))

    def and_(self) -> Any:
        return self._chain("&&", self.cmp, truthy)

    def cmp(self) -> Any:
        left = self.unary()
        tok = self.peek()
        if tok is not None and tok[0] == "op" and tok[1] in ("<", ">", "<=", ">="):
            self.take()
            a, b = _number(left), _number(self.unary())
            return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[tok[1]]
        if tok in (("op", "=="), ("op", "!=")):
            self.take()
            right = self.unary()
            same = (
                _text(left).lower() == _text(right).lower()
                if {type(left), type(right)}
                <= {
                    str,
                    type(None),
                }
                else left == right
            )
            return same if tok[1] == "==" else not same
        return left

    def unary(self) -> Any:
        if self.peek() == ("op", "!"):
            self.take()
            return not truthy(self.unary())
        return self.primary()

    def primary(self) -> Any:
        kind, value = self.take()
        if kind == "str":
            return value[1:-1].replace("''", "'")
        if kind == "num":
            return float(value) if "." in value else int(value)
        if value == "(":
            inner = self.or_()
            self.take(")")
            return inner
        if kind == "name":
            if value in ("true", "false"):
                return value == "true"
            if value == "null":
                return None
            if self.peek() == ("op", "("):
                self.take()
                args: list[Any] = []
                while self.peek() != ("op", ")"):
                    args.append(self.or_())
                    if self.peek() == ("op", ","):
                        self.take()
                self.take(")")
                return self.ctx.call(value, args)
            return self.ctx.lookup(value)
        raise Unsupported(f"token {value!r} in {self.text!r}")


def evaluate(expression: str, ctx: Context) -> Any:
    return _Parser(expression, ctx).parse()


_EXPR = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)


def substitute(text: str, ctx: Context) -> str:
    return _EXPR.sub(lambda m: _text(evaluate(m.group(1), ctx)), text)


def condition(text: Any, ctx: Context) -> bool:
    if text is None:
        return not ctx.failed
    if isinstance(text, bool):
        return text
    expr = str(text).strip()
    if expr.startswith("${{") and expr.endswith("}}"):
        expr = expr[3:-2]
    uses_status = re.search(r"\b(always|success|failure|cancelled)\(", expr)
    value = truthy(evaluate(expr, ctx))
    return value if uses_status else (value and not ctx.failed)


# --- workflows -------------------------------------------------------------------------------------
def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def input_defaults(workflow: dict[str, Any]) -> dict[str, Any]:
    """Declared defaults of the workflow's inputs (workflow_dispatch and workflow_call)."""
    on = workflow.get("on") or {}
    defaults: dict[str, Any] = {}
    for event in ("workflow_call", "workflow_dispatch"):
        for name, spec in ((on.get(event) or {}).get("inputs") or {}).items():
            defaults.setdefault(
                name, (spec or {}).get("default", "" if (spec or {}).get("type") != "boolean" else False)
            )
    return defaults


@dataclass
class StepResult:
    name: str
    kind: str  # "run", "skipped-uses", "skipped-if"
    returncode: int | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    log: str = ""


@dataclass
class JobResult:
    steps: list[StepResult]
    summary: str
    outputs: dict[str, str] = field(default_factory=dict)  # the job's `outputs:`, evaluated
    ran: bool = True  # False when the job's `if:` was false

    @property
    def failed(self) -> list[StepResult]:
        return [s for s in self.steps if s.kind == "run" and s.returncode != 0]

    @property
    def skipped_uses(self) -> list[str]:
        return [s.name for s in self.steps if s.kind == "skipped-uses"]


def _read_outputs(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            body: list[str] = []
            i += 1
            while i < len(lines) and lines[i] != delim:
                body.append(lines[i])
                i += 1
            out[name] = "\n".join(body)
        elif "=" in line:
            name, value = line.split("=", 1)
            out[name] = value
        i += 1
    path.write_text("")
    return out


def _run_script(script: Path, cwd: Path, env: dict[str, str], timeout: float) -> tuple[int, str]:
    """bash on the step's script as a runner starts it; its exit code and log (stdout and stderr
    merged, universal newlines). Through run_group: a timeout (TimeoutExpired) ends the whole group."""
    args = ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)]
    out: list[bytes] = []
    done = run_group(args, lambda data, _is_stdout: out.append(data), timeout=timeout, env=env, cwd=cwd)
    log = b"".join(out).decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
    if done.timed_out:
        raise subprocess.TimeoutExpired(args, timeout, output=log)
    return done.returncode, log


def run_job(
    workflow_path: Path,
    job: str,
    *,
    workspace: Path,
    inputs: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    scratch: Path,
    needs: dict[str, JobResult] | None = None,
    matrix: dict[str, Any] | None = None,
    timeout: float = 3600,
) -> JobResult:
    """Run ``job`` of the workflow in ``workspace``; ``inputs`` override the declared defaults,
    ``needs`` are the results of the jobs it needs, ``matrix`` picks a row (default: the first)."""
    wf = load(workflow_path)
    spec = wf["jobs"][job]
    ctx = Context(inputs={**input_defaults(wf), **(inputs or {})})
    ctx.needs = {name: {"outputs": r.outputs, "result": "success"} for name, r in (needs or {}).items()}
    declared = (spec.get("strategy") or {}).get("matrix") or {}
    for key, values in declared.items():
        if key in ("include", "exclude"):
            raise Unsupported("matrix include/exclude")
        if isinstance(values, str):
            values = evaluate(values.strip()[3:-2], ctx) if values.strip().startswith("${{") else [values]
        if matrix and key in matrix:
            assert matrix[key] in values, f"matrix {key}={matrix[key]!r} is not one of {values!r}"
            ctx.matrix[key] = matrix[key]
        else:
            ctx.matrix[key] = values[0]
    if "if" in spec and not condition(spec["if"], ctx):
        return JobResult([], "", ran=False)
    scratch.mkdir(parents=True, exist_ok=True)
    files = {
        name: scratch / name.lower()
        for name in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_STEP_SUMMARY", "GITHUB_PATH")
    }
    for f in files.values():
        f.write_text("")
    base_env = {
        **os.environ,
        **(env or {}),
        **{k: str(v) for k, v in files.items()},
        "GITHUB_ACTIONS": "true",
        "CI": "true",
        "GITHUB_WORKSPACE": str(workspace),
        "RUNNER_OS": ctx.runner["os"],
        "RUNNER_TEMP": str(scratch),
    }
    for scope in (wf.get("env") or {}, spec.get("env") or {}):
        for k, v in scope.items():
            base_env[k] = substitute(str(v), ctx)
    results: list[StepResult] = []
    extra_path: list[str] = []
    for n, step in enumerate(spec.get("steps") or []):
        name = str(step.get("name") or step.get("uses") or f"step {n + 1}")
        if not condition(step.get("if"), ctx):
            results.append(StepResult(name, "skipped-if"))
            continue
        if "uses" in step:
            results.append(StepResult(name, "skipped-uses"))
            continue
        if step.get("shell", "bash") != "bash":
            raise Unsupported(f"shell {step['shell']!r} in step {name!r}")
        script = scratch / f"step-{n + 1}.sh"
        script.write_text(substitute(str(step["run"]), ctx))
        step_env = dict(base_env)
        ctx.env = step_env
        for k, v in (step.get("env") or {}).items():
            step_env[k] = substitute(str(v), ctx)
        if extra_path:
            step_env["PATH"] = os.pathsep.join([*extra_path, step_env.get("PATH", "")])
        cwd = workspace / substitute(str(step.get("working-directory", ".")), ctx)
        returncode, log = _run_script(script, cwd, step_env, timeout)
        outputs = _read_outputs(files["GITHUB_OUTPUT"])
        for k, v in _read_outputs(files["GITHUB_ENV"]).items():
            base_env[k] = v
        extra_path = [*files["GITHUB_PATH"].read_text().split(), *extra_path]
        outcome = "success" if returncode == 0 else "failure"
        if step.get("id"):
            ctx.steps[str(step["id"])] = {"outputs": outputs, "outcome": outcome, "conclusion": outcome}
        results.append(StepResult(name, "run", returncode, outputs, log))
        if returncode != 0 and not step.get("continue-on-error"):
            ctx.failed = True
    outputs = {k: substitute(str(v), ctx) for k, v in (spec.get("outputs") or {}).items()}
    summary = files["GITHUB_STEP_SUMMARY"].read_text(encoding="utf-8", errors="replace")
    return JobResult(results, summary, outputs)
