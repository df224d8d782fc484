"""The typed model of a parsed Dockerfile: frozen values, no I/O.

This module is the contract between the parser (which builds these values), the planner (which
expands their words with ARG/ENV state and turns them into steps) and the linter.

Words are kept *unexpanded* here: ``$VAR`` substitution depends on ARG and ENV state that only
the planner knows (BuildKit expands at build time, per stage). Exec-form arguments and shell-form
command text are never expanded by ocibuild; the shell does that at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ocibuild.errors import Location


@dataclass(frozen=True)
class Heredoc:
    """A here-document attached to RUN, COPY or ADD.

    ``name`` is the delimiter word as written without quotes (``EOF``); ``content`` is the body
    with the final newline kept (BuildKit keeps it); ``expand`` is False when the delimiter was
    quoted (no variable expansion in COPY/ADD bodies); ``chomp`` is True for ``<<-`` (leading
    tabs stripped, already applied to ``content``); ``fd`` is the file descriptor written
    before ``<<`` (``3<<EOF``), 0 when none. ``raw`` is the body as written, tabs kept, when
    ``chomp`` changed it (None otherwise): BuildKit hands that to the shell when the heredoc is
    part of a longer RUN command (``RUN <<-EOF sh``), and the shell strips the tabs itself.
    """

    name: str
    content: str
    expand: bool = True
    chomp: bool = False
    fd: int = 0
    raw: str | None = None


@dataclass(frozen=True)
class ShellForm:
    """``RUN make all``: the command text, run as ``SHELL + [text]``. Continuations are joined."""

    text: str


@dataclass(frozen=True)
class ExecForm:
    """``RUN ["make", "all"]``: a JSON array of strings, run as is."""

    args: tuple[str, ...]


Command = ShellForm | ExecForm


@dataclass(frozen=True)
class Flag:
    """A ``--name=value`` flag as written (value unexpanded; None for a bare ``--link``)."""

    name: str
    value: str | None


@dataclass(frozen=True)
class Instruction:
    """Fields every instruction has.

    ``keyword`` is upper case; ``location`` spans the instruction's lines including continuations
    and heredoc bodies; ``original`` is the source text of the instruction's first line(s)
    with continuations joined (used in history ``created_by`` and in error messages); ``flags``
    are the flags as written, in order.
    """

    keyword: str
    location: Location
    original: str
    flags: tuple[Flag, ...] = ()


@dataclass(frozen=True)
class From(Instruction):
    image: str = ""  # unexpanded image word, e.g. "golang:${GO_VERSION}" or "scratch"
    name: str | None = None  # the stage name after AS, as written (case kept)
    platform: str | None = None  # unexpanded --platform value


@dataclass(frozen=True)
class Run(Instruction):
    command: Command = ShellForm("")
    heredocs: tuple[Heredoc, ...] = ()
    mounts: tuple[str, ...] = ()  # each --mount value as written, unexpanded
    network: str | None = None  # default | none | host
    security: str | None = None  # sandbox | insecure
    devices: tuple[str, ...] = ()  # each --device value as written


@dataclass(frozen=True)
class Cmd(Instruction):
    command: Command = ShellForm("")


@dataclass(frozen=True)
class Entrypoint(Instruction):
    command: Command = ShellForm("")


@dataclass(frozen=True)
class Shell(Instruction):
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: str


@dataclass(frozen=True)
class Label(Instruction):
    pairs: tuple[KeyValue, ...] = ()  # unexpanded, quotes kept for the expander to remove


@dataclass(frozen=True)
class Env(Instruction):
    pairs: tuple[KeyValue, ...] = ()
    legacy: bool = False  # ``ENV key value`` form (LegacyKeyValueFormat)


@dataclass(frozen=True)
class Expose(Instruction):
    ports: tuple[str, ...] = ()  # unexpanded words: "80", "53/udp", "8000-8010/tcp", "$PORT"


@dataclass(frozen=True)
class CopyBase(Instruction):
    """Shared by COPY and ADD. Sources and dest are unexpanded words."""

    sources: tuple[str, ...] = ()
    dest: str = ""
    heredocs: tuple[Heredoc, ...] = ()  # sources named by a heredoc (``COPY <<EOF /dest``)
    from_: str | None = None  # --from, unexpanded
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    parents: bool = False
    excludes: tuple[str, ...] = ()
    exec_form: bool = False  # ``COPY ["a b", "/dest/"]``


@dataclass(frozen=True)
class Copy(CopyBase):
    pass


@dataclass(frozen=True)
class Add(CopyBase):
    checksum: str | None = None
    keep_git_dir: bool = False
    unpack: bool | None = None  # None: default (unpack local archives, not URLs)


@dataclass(frozen=True)
class Volume(Instruction):
    paths: tuple[str, ...] = ()
    exec_form: bool = False


@dataclass(frozen=True)
class User(Instruction):
    user: str = ""  # "name", "uid", "name:group", "uid:gid"


@dataclass(frozen=True)
class Workdir(Instruction):
    path: str = ""


@dataclass(frozen=True)
class ArgDecl:
    name: str
    default: str | None  # None when no ``=`` was given; "" for ``ARG X=``


@dataclass(frozen=True)
class Arg(Instruction):
    args: tuple[ArgDecl, ...] = ()


@dataclass(frozen=True)
class Onbuild(Instruction):
    trigger: Instruction | None = None  # the wrapped instruction, parsed
    expression: str = ""  # the trigger text as written, stored in the image config


@dataclass(frozen=True)
class Stopsignal(Instruction):
    signal: str = ""


@dataclass(frozen=True)
class Healthcheck(Instruction):
    """``HEALTHCHECK NONE`` has ``test == ("NONE",)``.

    Otherwise ``test`` is ``("CMD", *args)`` for exec form or ``("CMD-SHELL", text)`` for shell
    form, as in the image config. Durations are nanoseconds (0 when not given).
    """

    test: tuple[str, ...] = ()
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@dataclass(frozen=True)
class Maintainer(Instruction):
    name: str = ""


@dataclass(frozen=True)
class Stage:
    """One ``FROM`` and the instructions up to the next ``FROM``.

    ``index`` counts stages from 0; ``name`` is the AS name lower-cased (None without AS).
    """

    index: int
    name: str | None
    base: From
    instructions: tuple[Instruction, ...]


@dataclass(frozen=True)
class Warning:  # noqa: A001 - a lint finding, shadowing the builtin only inside this module
    """A build-check finding, ``docker build --check`` style."""

    rule: str  # e.g. "JSONArgsRecommended"
    message: str
    location: Location
    url: str = ""

    def __str__(self) -> str:
        return f"{self.location} {self.rule}: {self.message}"


@dataclass(frozen=True)
class Dockerfile:
    """A parsed Dockerfile.

    ``instructions`` lists every instruction in source order (global ARGs, FROMs and stage
    bodies alike); ``global_args`` are the ARG instructions before the first FROM; ``stages`` the
    stage-grouped view; ``directives`` the parser directives found at the top, keys lower-cased.
    """

    name: str
    instructions: tuple[Instruction, ...]
    global_args: tuple[Arg, ...]
    stages: tuple[Stage, ...]
    directives: dict[str, str] = field(default_factory=dict)
    escape: str = "\\"
    warnings: tuple[Warning, ...] = ()  # findings made while parsing (e.g. empty continuation)
