"""Image references, normalised exactly as Docker does (``distribution/reference``).

    busybox                     -> docker.io/library/busybox:latest
    user/app:1.0                -> docker.io/user/app:1.0
    localhost:5000/app          -> localhost:5000/app:latest
    app@sha256:<hex>            -> docker.io/library/app@sha256:<hex>   (no tag added)
    app:1.0@sha256:<hex>        -> both kept; the digest is what gets pulled

The first path component is a registry host when it contains ``.`` or ``:``, is ``localhost``,
or has upper-case letters (Docker's rule; such a "host" is then looked up as a host).
``index.docker.io`` is the legacy spelling of ``docker.io``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ocibuild.digest import Digest
from ocibuild.errors import ContentError, UsageError

DEFAULT_REGISTRY = "docker.io"
DOCKER_HUB_API_HOST = "registry-1.docker.io"
_LEGACY_DEFAULT_REGISTRY = "index.docker.io"
_OFFICIAL_PREFIX = "library/"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[[a-fA-F0-9:]+\]"
_DOMAIN = rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_REFERENCE_RE = re.compile(rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?", re.ASCII)
_TAG_RE = re.compile(_TAG, re.ASCII)
_HEX64_RE = re.compile(r"[a-f0-9]{64}")


class InvalidReferenceError(UsageError):
    """An image reference that Docker would refuse; the message names the reference."""


@dataclass(frozen=True)
class Reference:
    """A normalised image reference. ``tag`` is ``None`` only when a digest was given alone.

    ``str(ref)`` is the fully qualified form (``docker.io/library/busybox:latest``);
    ``ref.familiar`` is Docker's short form (``busybox:latest``).
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse and normalise ``text``; raise InvalidReferenceError naming it when invalid."""
        if _HEX64_RE.fullmatch(text):
            raise InvalidReferenceError(
                f"invalid reference {text!r}: cannot specify 64-byte hexadecimal strings"
            )
        registry, remainder = _split_registry(text)
        colon = remainder.find(":")
        remote_name = remainder[:colon] if colon >= 0 else remainder
        if remote_name.lower() != remote_name:
            raise InvalidReferenceError(
                f"invalid reference {text!r}: repository name ({remote_name}) must be lowercase"
            )
        full = f"{registry}/{remainder}"
        m = _REFERENCE_RE.fullmatch(full)
        if m is None:
            if not text:
                raise InvalidReferenceError("invalid reference '': repository name is empty")
            if _REFERENCE_RE.fullmatch(full.lower()):
                raise InvalidReferenceError(
                    f"invalid reference {text!r}: repository name must be lowercase"
                )
            raise InvalidReferenceError(f"invalid reference format {text!r}")
        name, tag, digest_text = m.groups()
        if len(name) > NAME_TOTAL_LENGTH_MAX:
            raise InvalidReferenceError(
                f"invalid reference {text!r}: repository name must not be more than "
                f"{NAME_TOTAL_LENGTH_MAX} characters"
            )
        digest = None
        if digest_text is not None:
            try:
                digest = Digest.parse(digest_text)
            except ContentError as exc:
                raise InvalidReferenceError(f"invalid reference {text!r}: {exc.message}") from exc
        if tag is None and digest is None:
            tag = "latest"
        return cls(registry, remainder[: len(name) - len(registry) - 1], tag, digest)

    @property
    def name(self) -> str:
        """``registry/repository``, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        """The host (and port) to talk HTTP to: Docker Hub's API lives on another name."""
        return DOCKER_HUB_API_HOST if self.registry == DEFAULT_REGISTRY else self.registry

    @property
    def familiar_name(self) -> str:
        """Docker's short name: ``busybox``, ``user/app``, ``localhost:5000/app``."""
        if self.registry != DEFAULT_REGISTRY:
            return self.name
        if self.repository.startswith(_OFFICIAL_PREFIX) and self.repository.count("/") == 1:
            return self.repository[len(_OFFICIAL_PREFIX) :]
        return self.repository

    @property
    def familiar(self) -> str:
        """Docker's short form with tag and digest, as ``docker images`` and RepoTags show it."""
        return self.familiar_name + self._suffix()

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest when there is one, else the tag."""
        if self.digest is not None:
            return str(self.digest)
        assert self.tag is not None
        return self.tag

    def with_tag(self, tag: str) -> Reference:
        """The same repository with ``tag`` and no digest."""
        if not _TAG_RE.fullmatch(tag):
            raise InvalidReferenceError(f"invalid tag {tag!r} for {self.name}")
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: Digest) -> Reference:
        """The same repository and tag, pinned to ``digest``."""
        return replace(self, digest=digest)

    def without_digest(self) -> Reference:
        """The tag form (``latest`` when only a digest was given)."""
        return replace(self, tag=self.tag or "latest", digest=None)

    def _suffix(self) -> str:
        out = f":{self.tag}" if self.tag is not None else ""
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    def __str__(self) -> str:
        return self.name + self._suffix()


def _split_registry(text: str) -> tuple[str, str]:
    slash = text.find("/")
    first = text[:slash]
    if slash == -1 or (
        not any(c in first for c in ".:") and first != "localhost" and first.lower() == first
    ):
        registry, remainder = DEFAULT_REGISTRY, text
    else:
        registry, remainder = first, text[slash + 1 :]
    if registry == _LEGACY_DEFAULT_REGISTRY:
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and "/" not in remainder:
        remainder = _OFFICIAL_PREFIX + remainder
    return registry, remainder
