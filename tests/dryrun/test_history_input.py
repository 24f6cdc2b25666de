"""`dryrun history CASES`: the cases file is someone else's (a corpus TOML, a sweep report): bounded
in size and count, every spec checked before a tree is fetched, errors naming the case and the
usage exit code, never a traceback (issue #32's rule for every input read)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT
from toolchain.dryrun import history
from toolchain.dryrun.history import load_cases
from toolchain.errors import UsageError

CORPUS = ROOT / "fixtures" / "real_crashes" / "corpus.toml"
CASE = '[[case]]\nid = "{id}"\n[case.replay]\nop = "MUL_MAT"\nsrcs = [{{type = "f16", ne = [{ne}]}}, {{type = "f32", ne = [64, 1, 1, 1]}}]\n'


def test_the_corpus_is_read() -> None:
    corpus = tomllib.loads(CORPUS.read_text(encoding="utf-8"))["case"]
    replayable = [c["id"] for c in corpus if "replay" in c and c.get("replayable", True)]
    assert [c.id for c in load_cases(CORPUS)] == replayable and len(replayable) >= 9


def test_a_sweep_reports_crash_classes_are_read(tmp_path: Path) -> None:
    spec = {
        "op": "MUL_MAT",
        "srcs": [{"type": "f32", "ne": [64, 100, 1, 1]}, {"type": "f16", "ne": [64, 1, 1, 1]}],
    }
    classes = [
        {"verdict": "missing-kernel", "what": "kernel_mul_mv_f32_f16_4", "minimal": {"spec": spec}},
        {"verdict": "invalid-case", "what": "ours", "minimal": {"spec": {}}},  # not a crash: not replayed
    ]
    (tmp_path / "dryrun-sweep.json").write_text(json.dumps({"classes": classes}))
    (case,) = load_cases(tmp_path / "dryrun-sweep.json")
    assert case.id == "class-1 missing-kernel kernel_mul_mv_f32_f16_4" and case.spec == spec


@pytest.mark.parametrize(
    ("text", "suffix", "says"),
    [
        (CASE.format(id="a", ne="64, -3, 1, 1"), ".toml", "case a: srcs[0]: every size"),
        (CASE.format(id="a", ne="64, 100") + CASE.format(id="a", ne="64, 100"), ".toml", "appears twice"),
        (CASE.format(id=" ", ne="64, 100"), ".toml", "must start with a letter"),
        (CASE.format(id="a\\u001b[2J", ne="64, 100"), ".toml", "\\x1b[2J"),
        ("case = 3\n", ".toml", "array of tables"),
        ("[[case]]\nid = 'x'\n", ".toml", "no case to replay"),
        ("x = " + "[" * 2000 + "]" * 2000, ".toml", "nested too deeply"),
        ("\xff\xfe", ".toml", "not UTF-8"),
        ('{"classes": 3}', ".json", "no list of classes"),
        ('{"classes": [7]}', ".json", "class 1 is not an object"),
        (
            '{"classes": [{"verdict": "missing-kernel", "minimal": {"spec": {"op": "MUL_MAT"}}}]}',
            ".json",
            "srcs",
        ),
        (
            '{"classes": [{"verdict": "missing-kernel", "minimal": 5}]}',
            ".json",
            "replay spec must be a table",
        ),
        ("[" * 100 + "]" * 100, ".json", "nested deeper"),
        ('{"classes": [], "x": 1e999}', ".json", "not a finite number"),
    ],
)
def test_a_bad_cases_file_is_a_usage_error_naming_what(
    tmp_path: Path, text: str, suffix: str, says: str
) -> None:
    path = tmp_path / f"cases{suffix}"
    path.write_bytes(text.encode("latin-1") if text.startswith("\xff") else text.encode())
    with pytest.raises(UsageError) as err:
        load_cases(path)
    assert says in err.value.message, err.value.message


def test_size_and_count_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = tmp_path / "big.json"
    with big.open("wb") as fh:  # sparse: the reader must stop at the bound, not read it whole
        fh.truncate(history.MAX_CASES_BYTES + 10)
    with pytest.raises(UsageError, match="larger than"):
        load_cases(big)
    many = tmp_path / "many.toml"
    many.write_text("".join(CASE.format(id=f"c{i}", ne="64, 100") for i in range(5)))
    monkeypatch.setattr(history, "MAX_CASES", 4)
    with pytest.raises(UsageError, match="5 cases, more than 4"):
        load_cases(many)


def test_the_command_refuses_before_fetching_a_tree(tmp_path: Path) -> None:
    bad = tmp_path / "cases.toml"
    bad.write_text(CASE.format(id="huge", ne="16777216, 16777216"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "toolchain",
            "dryrun",
            "history",
            str(bad),
            "--from",
            "0.3.35",
            "--to",
            "0.3.36",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "TOOLCHAIN_INDEX_URL": "http://127.0.0.1:9/simple",
        },
    )
    assert done.returncode == UsageError.exit_code, done.stderr
    assert (
        "case huge: srcs[0]:" in done.stderr and "elements" in done.stderr and "Traceback" not in done.stderr
    )
    assert not (tmp_path / ".toolchain").exists() and json.dumps(done.stderr)
