"""`convert`'s exit status: an upstream defect of the tree does not stop the main job, ours does."""

from __future__ import annotations

from toolchain.convert.cli import exit_status
from toolchain.convert.results import ConvertResult


def result(arch: str, status: str, whose: str = "", cause: str = "") -> ConvertResult:
    return ConvertResult(arch, arch.capitalize(), "f16", status, cause=cause, whose=whose)


def test_a_failure_labelled_upstream_lets_the_main_job_go_on() -> None:
    """ModernBERT at the pin: the tree's converter writes a file its own loader refuses (labelled
    upstream, with evidence): `nox -s coverage` must go on to the matrix, which shows it as such."""
    results = [result("llama", "pass"), result("modernbert", "error", "upstream", "load")]
    assert exit_status(results, keep_going=False) == 0


def test_a_failure_of_ours_fails_the_command() -> None:
    for bad in (
        result("phi2", "error", "", "load"),  # our spec or shrink rule
        result("qwen3", "error", "", "converter-crash"),
        result("gemma3", "not-loaded", "", "load"),  # no loader: nothing was checked
    ):
        assert exit_status([result("llama", "pass"), bad], keep_going=False) == 1, bad
        assert exit_status([result("llama", "pass"), bad], keep_going=True) == 0


def test_nothing_passed_is_never_success() -> None:
    assert exit_status([result("modernbert", "error", "upstream", "load")], keep_going=False) == 1
    assert exit_status([result("llama", "pass")], keep_going=False) == 0
