"""Image references: Docker's normalisation, as a table, and its errors."""

from __future__ import annotations

import pytest

from ocibuild.digest import Digest
from ocibuild.errors import OcibuildError, UsageError
from ocibuild.reference import InvalidReferenceError, Reference

HEX = "a" * 64
DIGEST = f"sha256:{HEX}"

# (input, str(ref), registry, repository, tag, digest, familiar)
VALID = [
    ("busybox", "docker.io/library/busybox:latest", "docker.io", "library/busybox", "latest", None, "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "docker.io", "library/busybox", "1.36", None, "busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest", "docker.io", "library/busybox", "latest", None, "busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest", "docker.io", "library/busybox", "latest", None, "busybox:latest"),
    ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest", "docker.io", "library/busybox", "latest", None, "busybox:latest"),
    ("index.docker.io/busybox", "docker.io/library/busybox:latest", "docker.io", "library/busybox", "latest", None, "busybox:latest"),
    ("index.docker.io/user/app", "docker.io/user/app:latest", "docker.io", "user/app", "latest", None, "user/app:latest"),
    ("user/x", "docker.io/user/x:latest", "docker.io", "user/x", "latest", None, "user/x:latest"),
    ("user/x/y/z:t", "docker.io/user/x/y/z:t", "docker.io", "user/x/y/z", "t", None, "user/x/y/z:t"),
    ("docker.io/library/a/b", "docker.io/library/a/b:latest", "docker.io", "library/a/b", "latest", None, "library/a/b:latest"),
    ("localhost/a", "localhost/a:latest", "localhost", "a", "latest", None, "localhost/a:latest"),
    ("localhost:5000/a", "localhost:5000/a:latest", "localhost:5000", "a", "latest", None, "localhost:5000/a:latest"),
    ("127.0.0.1:5000/a", "127.0.0.1:5000/a:latest", "127.0.0.1:5000", "a", "latest", None, "127.0.0.1:5000/a:latest"),
    ("127.0.0.1:5000/a/b:v2", "127.0.0.1:5000/a/b:v2", "127.0.0.1:5000", "a/b", "v2", None, "127.0.0.1:5000/a/b:v2"),
    ("ghcr.io/o/r:1.0", "ghcr.io/o/r:1.0", "ghcr.io", "o/r", "1.0", None, "ghcr.io/o/r:1.0"),
    ("example.com/single", "example.com/single:latest", "example.com", "single", "latest", None, "example.com/single:latest"),
    ("my-registry.example.com:443/team/app", "my-registry.example.com:443/team/app:latest", "my-registry.example.com:443", "team/app", "latest", None, "my-registry.example.com:443/team/app:latest"),
    ("[::1]:5000/a:b", "[::1]:5000/a:b", "[::1]:5000", "a", "b", None, "[::1]:5000/a:b"),
    ("Host.Example.com/a", "Host.Example.com/a:latest", "Host.Example.com", "a", "latest", None, "Host.Example.com/a:latest"),
    ("Upper/a", "Upper/a:latest", "Upper", "a", "latest", None, "Upper/a:latest"),  # Docker: an upper-case first part is a host
    ("a_b/c__d/e-f/g--h/i.j", "docker.io/a_b/c__d/e-f/g--h/i.j:latest", "docker.io", "a_b/c__d/e-f/g--h/i.j", "latest", None, "a_b/c__d/e-f/g--h/i.j:latest"),
    ("a:Tag_1.2-x", "docker.io/library/a:Tag_1.2-x", "docker.io", "library/a", "Tag_1.2-x", None, "a:Tag_1.2-x"),
    ("a:" + "t" * 128, "docker.io/library/a:" + "t" * 128, "docker.io", "library/a", "t" * 128, None, "a:" + "t" * 128),
    (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}", "docker.io", "library/busybox", None, DIGEST, f"busybox@{DIGEST}"),
    (f"busybox:1@{DIGEST}", f"docker.io/library/busybox:1@{DIGEST}", "docker.io", "library/busybox", "1", DIGEST, f"busybox:1@{DIGEST}"),
    (f"localhost:5000/a@{DIGEST}", f"localhost:5000/a@{DIGEST}", "localhost:5000", "a", None, DIGEST, f"localhost:5000/a@{DIGEST}"),
    (f"localhost:5000/a:t@{DIGEST}", f"localhost:5000/a:t@{DIGEST}", "localhost:5000", "a", "t", DIGEST, f"localhost:5000/a:t@{DIGEST}"),
    (f"a@sha512:{'b' * 128}", f"docker.io/library/a@sha512:{'b' * 128}", "docker.io", "library/a", None, f"sha512:{'b' * 128}", f"a@sha512:{'b' * 128}"),
    ("a" * 40 + "/" + "b" * 200, "docker.io/" + "a" * 40 + "/" + "b" * 200 + ":latest", "docker.io", "a" * 40 + "/" + "b" * 200, "latest", None, "a" * 40 + "/" + "b" * 200 + ":latest"),
]


@pytest.mark.parametrize("text, full, registry, repository, tag, digest, familiar", VALID)
def test_parse_normalises_like_docker(
    text: str, full: str, registry: str, repository: str, tag: str | None, digest: str | None, familiar: str
) -> None:
    ref = Reference.parse(text)
    assert str(ref) == full
    assert (ref.registry, ref.repository, ref.tag) == (registry, repository, tag)
    assert ref.digest == (Digest.parse(digest) if digest else None)
    assert ref.familiar == familiar
    assert Reference.parse(str(ref)) == ref  # the normalised form is a fixed point
    assert Reference.parse(ref.familiar) == ref


# (input, fragment of the message)
INVALID = [
    ("", "repository name is empty"),
    ("Busybox", "repository name (library/Busybox) must be lowercase"),
    ("user/App", "repository name (user/App) must be lowercase"),
    ("localhost:5000/Upper", "repository name (Upper) must be lowercase"),
    ("docker.io/User/x:tag", "repository name (User/x) must be lowercase"),
    (HEX, "cannot specify 64-byte hexadecimal strings"),
    ("a:b:c", "invalid reference format"),
    ("a::b", "invalid reference format"),
    ("a:", "invalid reference format"),
    ("a@", "invalid reference format"),
    ("-a", "invalid reference format"),
    ("a-", "invalid reference format"),
    ("a..b", "invalid reference format"),
    ("a/", "invalid reference format"),
    ("/a", "invalid reference format"),
    ("a//b", "invalid reference format"),
    ("a b", "invalid reference format"),
    ("a:-tag", "invalid reference format"),
    ("a:.tag", "invalid reference format"),
    ("a:" + "t" * 129, "invalid reference format"),
    ("a@sha256:abc", "invalid reference format"),
    ("a@sha256:" + "g" * 64, "invalid reference format"),
    (f"a@md5:{'a' * 32}", "unsupported algorithm"),
    (f"a@sha256:{'a' * 63}", "want 64 lower-case hex digits"),
    ("localhost:port/a", "invalid reference format"),
    ("a" * 40 + "/" + "b" * 210, "must not be more than 255 characters"),
    ("host.example.com/" + "b" * 240, "must not be more than 255 characters"),
]


@pytest.mark.parametrize("text, fragment", INVALID)
def test_invalid_references_name_the_input(text: str, fragment: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        Reference.parse(text)
    message = str(info.value)
    assert fragment in message
    assert repr(text) in message or f"({text})" in message or text == "" or text[:20] in message
    assert isinstance(info.value, UsageError) and isinstance(info.value, OcibuildError)


def test_api_host_of_docker_hub() -> None:
    assert Reference.parse("busybox").api_host == "registry-1.docker.io"
    assert Reference.parse("localhost:5000/a").api_host == "localhost:5000"
    assert Reference.parse("ghcr.io/a/b").api_host == "ghcr.io"


def test_derived_references() -> None:
    ref = Reference.parse(f"localhost:5000/a:t@{DIGEST}")
    assert ref.reference == DIGEST  # the digest wins when both are given
    assert str(ref.with_tag("v2")) == "localhost:5000/a:v2"
    assert str(ref.without_digest()) == "localhost:5000/a:t"
    d = Digest.parse("sha256:" + "b" * 64)
    assert str(Reference.parse("a").with_digest(d)) == f"docker.io/library/a:latest@{d}"
    assert Reference.parse(f"a@{DIGEST}").without_digest().tag == "latest"
    with pytest.raises(InvalidReferenceError, match="invalid tag"):
        ref.with_tag("bad tag")
    assert Reference.parse("a").name == "docker.io/library/a"
    assert Reference.parse("a").familiar_name == "a"
