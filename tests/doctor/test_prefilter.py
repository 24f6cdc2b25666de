"""Prefilter keywords derived from the regexes: sound (every match holds one) and shared."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolchain.doctor.catalog import PATTERNS
from toolchain.doctor.prefilter import choose_keywords, required_literals


def test_required_literals_of_sequences_groups_and_branches() -> None:
    assert required_literals(r"foo \d+ (?:bar|qux)") == [("foo ",), (" ",), ("bar", "qux")]
    assert required_literals(r"x(?:ab)?y") == [("x",), ("y",)]  # an optional group is not required
    assert required_literals(r"(?:one|two)+ z") == [("one", "two"), (" z",)]
    assert required_literals(r"a|b\d") == [("a", "b")]
    with pytest.raises(ValueError):
        required_literals(r"(?i)boom")
    with pytest.raises(ValueError):
        required_literals(r"\d+|x")  # one branch needs no literal


def test_keywords_are_shared_and_inside_each_branch() -> None:
    kws = choose_keywords({"a": "failed to allocate", "b": "failed to build", "c": "SIGSEGV|SIGBUS"})
    assert kws["a"] == kws["b"] and len(kws["a"]) == 1 and kws["a"][0] in "failed to build"
    assert all(any(k in lit for k in kws["c"]) for lit in ("SIGSEGV", "SIGBUS"))


@pytest.mark.parametrize("pid", sorted(PATTERNS))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_match_holds_a_keyword(pid: str, data: st.DataObject) -> None:
    pattern = PATTERNS[pid]
    text = data.draw(st.from_regex(pattern.compiled, fullmatch=False).filter(lambda s: "\n" not in s))
    assert any(k in text for k in pattern.keywords), (pid, text, pattern.keywords)
