"""The one exception tree of ocibuild.

    OcibuildError                 anything ocibuild raises on purpose
    ├── DockerfileError           bad Dockerfile text; carries a Location
    ├── PlanError                 a Dockerfile that parses but cannot be planned (stages, args)
    ├── RegistryError             talking to a registry failed (auth, HTTP, protocol)
    │   └── AuthError             credentials missing or refused
    ├── ContentError              bytes that do not match their digest or size, hostile input
    ├── ExecutionError            a build step failed; carries the step's Location
    │   └── SandboxError          no isolation mode can run RUN here, or the sandbox broke
    ├── StoreError                the content store on disk
    ├── OutputError               writing an output (tarball, layout, push)
    └── UsageError                bad command-line flags or values

Foreign exceptions are translated where they are met (``raise X(...) from exc``). Every error that
reaches the user renders as one line through ``str()``: ``Dockerfile:7: <message>`` when a location
is known, followed by an optional hint on its own line.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """A place in a source file: 1-based line numbers, ``end_line`` inclusive."""

    file: str
    line: int
    end_line: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class OcibuildError(Exception):
    """Base of every error ocibuild raises on purpose."""

    def __init__(self, message: str, *, location: Location | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.location = location
        self.hint = hint

    def __str__(self) -> str:
        if self.location is not None:
            return f"{self.location}: {self.message}"
        return self.message


class DockerfileError(OcibuildError):
    """The Dockerfile text is invalid."""


class PlanError(OcibuildError):
    """The Dockerfile parses but cannot be turned into a build plan."""


class RegistryError(OcibuildError):
    """A registry request failed."""


class AuthError(RegistryError):
    """Credentials are missing, wrong, or refused by the registry."""


class ContentError(OcibuildError):
    """Content does not match its digest or size, or is hostile (path traversal, bad tar)."""


class ExecutionError(OcibuildError):
    """A build step failed."""


class SandboxError(ExecutionError):
    """No isolation mode can run this step here, or the sandbox itself failed."""


class StoreError(OcibuildError):
    """The content store could not be read or written."""


class OutputError(OcibuildError):
    """An output could not be written."""


class UsageError(OcibuildError):
    """Bad command-line usage."""
