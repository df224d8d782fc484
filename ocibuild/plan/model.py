"""The build plan: what the executor runs. Frozen values, fully expanded, no I/O.

``make_plan`` (in ``ocibuild.plan``) turns a parsed ``Dockerfile`` plus the configs of its base
images into a ``BuildPlan``. Every word that BuildKit expands has been expanded here with the ARG
and ENV state of its stage; shell text and exec arguments are left for the shell.

Contract with the executor:
- ``BuildPlan.stages`` holds only the stages the target needs, in a topological order; each
  ``PlannedStage`` knows its original ``index`` in the Dockerfile and what it depends on.
- ``BuildPlan.groups`` partitions them into waves that can run in parallel (every dependency of a
  stage in wave N is in a wave < N).
- Steps carry the ``Instruction`` they came from, for locations, progress names and history.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ocibuild.dockerfile.model import Command, Heredoc, Instruction

# --- where content comes from ---------------------------------------------------------------


@dataclass(frozen=True)
class Scratch:
    """``FROM scratch``: an empty root, no config."""


@dataclass(frozen=True)
class StageRef:
    """Another stage of this build, by its index in the Dockerfile."""

    index: int


@dataclass(frozen=True)
class ImageRef:
    """An image from a registry: the expanded reference as written (normalise with
    ``ocibuild.reference``) and the platform to pick from an index (``os/arch[/variant]``)."""

    ref: str
    platform: str


@dataclass(frozen=True)
class ContextRef:
    """The build context (the default source of COPY/ADD and bind mounts)."""


Source = Scratch | StageRef | ImageRef | ContextRef


# --- inputs from resolved base images -------------------------------------------------------


@dataclass(frozen=True)
class BaseConfig:
    """What the planner needs from a base image's config: ``Env`` (``K=V`` strings, for
    expanding words), ``OnBuild`` triggers (parsed and planned at the start of the stage),
    ``WorkingDir`` and ``Shell``."""

    env: tuple[str, ...] = ()
    onbuild: tuple[str, ...] = ()
    workdir: str = ""
    shell: tuple[str, ...] = ()


# --- RUN mounts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    """One ``RUN --mount``, parsed and expanded. ``type`` is bind|cache|tmpfs|secret|ssh.

    ``source`` is where a bind/cache mount reads from (``ContextRef`` by default for bind,
    ``StageRef``/``ImageRef`` with ``from=``); ``source_path`` the path inside it.
    Options that do not apply to the type keep their defaults.
    """

    type: str
    target: str = ""
    source: Source = ContextRef()
    source_path: str = ""
    readonly: bool = True  # bind defaults to ro; cache and tmpfs to rw
    id: str = ""  # cache id (default: target), secret/ssh id
    sharing: str = "shared"  # shared | private | locked
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int | None = None  # tmpfs bytes
    required: bool = False  # secret/ssh
    env: str | None = None  # secret as environment variable


# --- steps -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunStep:
    instruction: Instruction
    command: Command  # shell form text still needs the stage's SHELL
    heredocs: tuple[Heredoc, ...] = ()
    mounts: tuple[Mount, ...] = ()
    network: str = "default"
    security: str = "sandbox"
    build_args: tuple[tuple[str, str], ...] = ()  # ARGs in scope, as env for this RUN (sorted)
    history_args: tuple[tuple[str, str], ...] = ()  # the subset shown in history (no proxies)


@dataclass(frozen=True)
class CopyStep:
    instruction: Instruction
    add: bool  # ADD rather than COPY
    sources: tuple[str, ...]  # expanded; URLs and git refs for ADD kept as written
    dest: str  # expanded, relative to WORKDIR if not absolute (executor resolves)
    source: Source = ContextRef()
    heredocs: tuple[Heredoc, ...] = ()  # bodies already expanded when heredoc.expand
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    parents: bool = False
    excludes: tuple[str, ...] = ()
    checksum: str | None = None
    keep_git_dir: bool = False
    unpack: bool | None = None


@dataclass(frozen=True)
class ConfigStep:
    """An instruction that only edits the image config (ENV, LABEL, EXPOSE, VOLUME, USER,
    WORKDIR, CMD, ENTRYPOINT, SHELL, STOPSIGNAL, HEALTHCHECK, ONBUILD, MAINTAINER, ARG).

    ``instruction`` is the typed instruction with its words *expanded* (a new value derived from
    the parsed one), so the executor applies it with a ``match`` on its type. WORKDIR also
    creates the directory, which the executor does.
    """

    instruction: Instruction


Step = RunStep | CopyStep | ConfigStep


@dataclass(frozen=True)
class PlannedStage:
    index: int  # position in the Dockerfile (the number ``COPY --from=N`` uses)
    name: str | None  # lower-cased AS name
    base: Source  # Scratch | StageRef | ImageRef
    platform: str  # the stage's target platform os/arch[/variant]
    steps: tuple[Step, ...]
    depends_on: tuple[int, ...] = ()  # stage indexes this stage needs (base, --from, mounts)
    args: tuple[tuple[str, str], ...] = ()  # resolved ARG values at the end of the stage


@dataclass(frozen=True)
class BuildPlan:
    stages: tuple[PlannedStage, ...]  # topological order; the last one is the target
    groups: tuple[tuple[int, ...], ...]  # stage indexes per parallel wave
    target: int  # index of the target stage
    images: tuple[ImageRef, ...] = ()  # every external image the plan needs (bases, --from)
    warnings: tuple[str, ...] = ()  # e.g. unused build args
    build_args: dict[str, str] = field(default_factory=dict)
    platform: str = ""  # the target platform (--platform, else the host's), os/arch[/variant]
