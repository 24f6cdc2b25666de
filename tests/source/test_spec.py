from collections.abc import Callable

import pytest

from toolchain.errors import UnsafeInputError, UsageError
from toolchain.source.spec import SourceSpec, parse_requirement, pinned_version, validate_ref, validate_url

GOOD = {
    validate_ref: [
        "HEAD",
        "master",
        "release/0.3",
        "v0.3.36",
        "b1234",
        "0c1e57098",
        "0c1e57098" + "a" * 31,
        "feature-x_y.z",
    ],
    validate_url: [
        "https://github.com/ggml-org/llama.cpp",
        "http://127.0.0.1:8080/llama.cpp.git",
        "ssh://git@github.com/ggml-org/llama.cpp.git",
        "git@github.com:ggml-org/llama.cpp.git",
        "git://example.org/llama.cpp",
        "file:///srv/git/llama.cpp.git",
        "/srv/git/llama.cpp.git",
    ],
}


@pytest.mark.parametrize(
    ("validate", "value"), [(validate, value) for validate, values in GOOD.items() for value in values]
)
def test_good_refs_and_urls_are_returned_unchanged(validate: Callable[[str], str], value: str) -> None:
    assert validate(value) == value


@pytest.mark.parametrize(
    "ref",
    [
        "--upload-pack=touch /tmp/pwned",
        "-c",
        "-ccore.sshCommand=x",
        "",
        "a..b",
        "a b",
        "x\n",
        "HEAD@{1}",
        "HEAD~1",
        "HEAD^",
        "a:b",
        "a*",
        "a[1]",
        "/abs",
        "end/",
        "x.lock",
        "a/.hidden",
        "@",
        "a" * 300,
    ],
)
def test_unsafe_or_invalid_refs_are_refused(ref: str) -> None:
    with pytest.raises(UnsafeInputError) as info:
        validate_ref(ref)
    assert info.value.exit_code == 4
    assert info.value.hint


@pytest.mark.parametrize(
    "url",
    [
        "--upload-pack=touch /tmp/pwned",
        "-c core.sshCommand=touch /tmp/pwned",
        "ext::sh -c touch% /tmp/pwned",
        "fd::17",
        "transport::whatever",
        "ftp://example.org/x",
        "javascript:alert(1)",
        "https://",
        "relative/path",
        "https://host/x y",
        "",
    ],
)
def test_unsafe_urls_are_refused(url: str) -> None:
    with pytest.raises(UnsafeInputError):
        validate_url(url)


def test_spec_validates_on_construction() -> None:
    with pytest.raises(UnsafeInputError):
        SourceSpec(kind="git", location="https://host/x", ref="--upload-pack=x")
    with pytest.raises(UnsafeInputError):
        SourceSpec(kind="git", location="ext::sh", ref="HEAD")


def test_requirements() -> None:
    assert pinned_version(parse_requirement("llama-cpp-python==0.3.36")) == "0.3.36"
    assert pinned_version(parse_requirement("llama_cpp_python>=0.3")) is None
    with pytest.raises(UsageError):
        parse_requirement("numpy==1.0")
    with pytest.raises(UsageError):
        parse_requirement("llama-cpp-python===")
    with pytest.raises(UnsafeInputError):
        parse_requirement("--index-url=http://evil/ llama-cpp-python")
    with pytest.raises(UnsafeInputError):
        parse_requirement("llama-cpp-python @ https://evil.example/x.tar.gz")
