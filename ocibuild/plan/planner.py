"""Dockerfile -> BuildPlan in two pure phases (DESIGN.md's data flow).

1. :func:`base_images` lists the external images the target needs, so the caller can resolve
   their configs from a registry (the only I/O before planning).
2. :func:`make_plan` plans the stages the target needs, given those configs.

Both are lazy like BuildKit's dispatcher: only stages reachable from the target are expanded,
so a broken stage the target does not need never raises. Stage lookup follows BuildKit's
``dispatchStates``: ``FROM x`` names an *earlier* stage (exact, lower-case match) or else an
image; ``COPY --from`` takes an index, a stage name (any case) or an image; ``RUN --mount
from=`` a stage name or an image.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace

from ocibuild.dockerfile import model as df
from ocibuild.dockerfile.expand import Expansion, expand, expand_word
from ocibuild.dockerfile.flags import with_suggestion
from ocibuild.errors import DockerfileError, OcibuildError, PlanError
from ocibuild.image.platform import Platform, host_platform, parse_platform, platform_args
from ocibuild.plan import graph
from ocibuild.plan.model import (
    BaseConfig,
    BuildPlan,
    ImageRef,
    PlannedStage,
    Scratch,
    Source,
    StageRef,
)
from ocibuild.plan.mounts import mount_from
from ocibuild.plan.steps import (
    DEFAULT_PATH,
    PROXY_ARGS,
    StagePlanner,
    StageState,
    StepContext,
    normalize_workdir,
)

# Build args BuildKit reads itself; passing them never warrants an "unused" warning.
_BUILTIN_ARGS = frozenset(PROXY_ARGS) | {"SOURCE_DATE_EPOCH", "TARGETSTAGE"}


def base_images(
    dockerfile: df.Dockerfile,
    target: str | None = None,
    build_args: Mapping[str, str] | None = None,
    platform: str | None = None,
    build_platform: str | None = None,
    named: Collection[str] = (),
) -> tuple[ImageRef, ...]:
    """The external images needed by the stages ``target`` needs, in first-use order: FROM
    bases that are neither stages nor scratch, ``COPY --from=<image>`` and ``RUN --mount
    from=<image>``. ONBUILD triggers of base images are not known yet (their configs are what
    the caller is about to fetch), so images only they name appear in ``make_plan``'s
    ``BuildPlan.images``. Raises PlanError for an unknown target, bad FROM expansion or cycles.
    """
    planner = Planner(dockerfile, build_args or {}, platform, build_platform, None, named)
    return planner.graph(target)[2]


def make_plan(
    dockerfile: df.Dockerfile,
    bases: Mapping[str, BaseConfig],
    target: str | None = None,
    build_args: Mapping[str, str] | None = None,
    platform: str | None = None,
    build_platform: str | None = None,
    named: Collection[str] = (),
) -> BuildPlan:
    """Plan the stages ``target`` (a stage name, any case, or index; default: the last stage)
    needs. ``bases`` maps each FROM image's ``ImageRef.ref`` (as :func:`base_images` returns
    it) to its config; a missing FROM image raises PlanError. ``platform`` is the target
    platform (default: ``build_platform``, itself defaulting to this host's ``linux/<arch>``).
    ``named``: the ``--build-context`` names; a stage so named is replaced by that context
    wherever another stage uses it (FROM, ``--from``, ``from=``), as BuildKit does.
    """
    planner = Planner(dockerfile, build_args or {}, platform, build_platform, bases, named)
    return planner.plan(target)


def _parse_trigger(text: str, stage: df.Stage, name: str, escape: str) -> df.Instruction:
    """An image config's ONBUILD expression as an instruction located at the FROM using it
    (BuildKit reports trigger errors at the FROM line too)."""
    from ocibuild.dockerfile.parser import parse_instruction

    where = stage.base.location
    try:
        trigger = parse_instruction(text, escape=escape, name=name, line=where.line)
    except OcibuildError as exc:
        raise PlanError(f"ONBUILD trigger {text!r}: {exc.message}", location=where) from exc
    if isinstance(trigger, df.Onbuild | df.From | df.Maintainer):
        raise PlanError(
            f"{trigger.keyword} isn't allowed as an ONBUILD trigger", location=where
        )
    return replace(trigger, location=where)


class Planner:
    """One planning run: global ARG scope, memoised FROM resolution, stage edges.

    Use :func:`base_images`/:func:`make_plan`; the build checks drive this class directly to
    plan every stage (``all_stages``) with their own :class:`StagePlanner` subclass.
    """

    def __init__(
        self,
        dockerfile: df.Dockerfile,
        build_args: Mapping[str, str],
        platform: str | None,
        build_platform: str | None,
        bases: Mapping[str, BaseConfig] | None,
        named: Collection[str] = (),
    ) -> None:
        self.df = dockerfile
        self.stages = dockerfile.stages
        self.build_args = dict(build_args)
        self.bases = bases
        if not self.stages:
            raise PlanError("dockerfile contains no stages to build")
        try:
            self.build_platform = (
                parse_platform(build_platform) if build_platform else host_platform()
            )
            self.target_platform = (
                parse_platform(platform, self.build_platform) if platform else self.build_platform
            )
        except ValueError as exc:
            raise PlanError(f"invalid platform: {exc}") from exc
        self.by_name: dict[str, int] = {}
        # Stages a --build-context of the same name replaces: their uses name that context.
        self.replaced = {n.lower() for n in named} & {s.name.lower() for s in self.stages if s.name}
        for stage in self.stages:
            if stage.name and stage.name.lower() not in self.replaced:
                self.by_name[stage.name.lower()] = stage.index
        self.consumed: set[str] = set()
        self._bases: dict[int, tuple[Source, Platform]] = {}
        self._commands: dict[int, tuple[df.Instruction, ...]] = {}
        self._images: dict[int, list[ImageRef]] = {}
        self.global_env: dict[str, str] = {}
        self.global_deps: dict[str, frozenset[str]] = {}

    # --- scopes ------------------------------------------------------------------------

    def init_globals(self, target: int) -> None:
        """BuildKit's ``defaultArgs`` + ``buildMetaArgs``: platform ARGs (build args may
        override them), then the ARGs before the first FROM, a build arg beating a default."""
        env = platform_args(self.target_platform, self.build_platform)
        env["TARGETSTAGE"] = self.stages[target].name or "default"
        for key in env:
            env[key] = self.build_args.get(key, env[key])
        for ins in self.df.global_args:
            for decl in ins.args:
                value: str | None
                if decl.name in self.build_args:
                    value = self.build_args[decl.name]
                elif decl.default is not None:
                    result = self._expand(decl.default, env, ins)
                    value = result.value
                    self.global_deps[decl.name] = result.matched - {decl.name}
                else:
                    value = None
                if value is not None:
                    env.pop(decl.name, None)
                    env[decl.name] = value
        self.global_env = env

    def _expand(self, word: str, env: Mapping[str, str], ins: df.Instruction) -> Expansion:
        try:
            return expand(word, env, self.df.escape)
        except DockerfileError as exc:
            raise PlanError(exc.message, location=ins.location) from exc

    def _consume_global(self, names: frozenset[str]) -> None:
        todo = list(names)
        while todo:
            name = todo.pop()
            if name not in self.consumed:
                self.consumed.add(name)
                todo.extend(self.global_deps.get(name, ()))

    # --- stage resolution --------------------------------------------------------------

    def resolve_target(self, target: str | None) -> int:
        if target is None or target == "":
            return self.stages[-1].index
        if target.lower() in self.by_name:
            return self.by_name[target.lower()]
        named = [s.index for s in self.stages if s.name and s.name.lower() == target.lower()]
        if named:  # a replaced stage as the target: its own instructions
            return named[-1]
        if target.isdigit() and int(target) < len(self.stages):
            return int(target)
        names = [s.name for s in self.stages if s.name]
        raise PlanError(
            with_suggestion(f'target stage "{target}" could not be found', target, names, True),
            hint="available stages: " + (", ".join(names) or "none has a name (FROM ... AS name)"),
        )

    def stage_name(self, index: int) -> str:
        return self.stages[index].name or f"stage-{index}"

    def base(self, index: int) -> tuple[Source, Platform]:
        """The expanded FROM of stage ``index``: its source and platform (memoised)."""
        if index in self._bases:
            return self._bases[index]
        stage = self.stages[index]
        ins = stage.base
        result = self._expand(stage.base.image, self.global_env, ins)
        self._consume_global(result.matched)
        name = result.value
        if name == "":
            raise PlanError(f"base name ({ins.image}) should not be blank", location=ins.location)
        platform = self.target_platform
        if ins.platform is not None:
            plat = self._expand(ins.platform, self.global_env, ins)
            self._consume_global(plat.matched)
            if plat.value == "":
                raise PlanError(
                    f"empty platform value from expression {ins.platform}", location=ins.location
                )
            try:
                platform = parse_platform(plat.value, self.build_platform)
            except ValueError as exc:
                raise PlanError(
                    f"failed to parse platform {ins.platform}: {exc}", location=ins.location
                ) from exc
        earlier = [s.index for s in self.stages[:index]
                   if s.name == name and name not in self.replaced]
        source: Source
        if earlier:
            source = StageRef(earlier[-1])
            platform = self.base(earlier[-1])[1]
        elif name == "scratch":
            source = Scratch()
        else:
            if name.lower() not in self.replaced and any(
                    s.name == name.lower() for s in self.stages[:index]):
                raise PlanError(
                    f'failed to parse stage name "{name}": invalid reference format: '
                    "repository name must be lowercase",
                    location=ins.location,
                    hint=f'stage names are lower case: FROM {name.lower()}',
                )
            source = ImageRef(name, str(platform))
        self._bases[index] = (source, platform)
        return source, platform

    def resolve_copy_from(self, value: str, ins: df.Instruction) -> Source:
        try:
            plain = expand_word(value, {}, self.df.escape) == value
        except DockerfileError:
            plain = False
        if not plain:
            raise PlanError(
                "variable expansion is not supported for --from, define a new stage with FROM "
                "using ARG from global scope as a workaround",
                location=ins.location,
            )
        if value.lstrip("+-").isdigit():
            number = int(value)
            if not 0 <= number < len(self.stages):
                raise PlanError(f"invalid stage index {number}", location=ins.location)
            return StageRef(number)
        if value.lower() in self.by_name:
            return StageRef(self.by_name[value.lower()])
        if value == "":
            raise PlanError("--from requires a stage name, index or image", location=ins.location)
        return self._external(value)

    def _external(self, value: str) -> Source:
        """A ``--from``/``from=`` that names no stage: an image, or the empty ``scratch``."""
        return Scratch() if value == "scratch" else ImageRef(value, str(self.target_platform))

    def resolve_mount_from(self, value: str, ins: df.Instruction) -> Source:
        if value.lower() in self.by_name:
            return StageRef(self.by_name[value.lower()])
        return self._external(value)

    def commands(self, index: int) -> tuple[df.Instruction, ...]:
        """The stage's instructions, preceded by the ONBUILD triggers of its base: those of a
        base image's config, or the ONBUILD instructions of a base stage."""
        if index in self._commands:
            return self._commands[index]
        stage = self.stages[index]
        source, _ = self.base(index)
        triggers: list[df.Instruction] = []
        if isinstance(source, StageRef):
            for ins in self.stages[source.index].instructions:
                if isinstance(ins, df.Onbuild) and ins.trigger is not None:
                    triggers.append(replace(ins.trigger, location=stage.base.location))
        elif isinstance(source, ImageRef) and self.bases is not None:
            for text in self.base_config(index).onbuild:
                triggers.append(_parse_trigger(text, stage, self.df.name, self.df.escape))
        self._commands[index] = (*triggers, *stage.instructions)
        return self._commands[index]

    def base_config(self, index: int) -> BaseConfig:
        source, _ = self.base(index)
        assert isinstance(source, ImageRef) and self.bases is not None
        if source.ref not in self.bases:
            raise PlanError(
                f"no config for base image {source.ref}",
                location=self.stages[index].base.location,
            )
        return self.bases[source.ref]

    def edges(self, index: int) -> list[graph.Edge]:
        """Stage ``index``'s dependencies on other stages; records its external images."""
        source, _ = self.base(index)
        base_ins = self.stages[index].base
        out: list[graph.Edge] = []
        images: list[ImageRef] = []
        if isinstance(source, StageRef):
            out.append(graph.Edge(index, source.index, base_ins, f"FROM {base_ins.image}"))
        elif isinstance(source, ImageRef):
            images.append(source)
        for ins in self.commands(index):
            found: list[tuple[Source, str]] = []
            if isinstance(ins, df.CopyBase) and ins.from_ is not None:
                what = f"{ins.keyword} --from={ins.from_}"
                found.append((self.resolve_copy_from(ins.from_, ins), what))
            elif isinstance(ins, df.Run):
                for spec in ins.mounts:
                    try:
                        value = mount_from(spec)
                    except ValueError as exc:
                        raise PlanError(str(exc), location=ins.location) from exc
                    if value:
                        what = f"RUN --mount from={value}"
                        found.append((self.resolve_mount_from(value, ins), what))
            for dep, what in found:
                if isinstance(dep, StageRef):
                    out.append(graph.Edge(index, dep.index, ins, what))
                elif isinstance(dep, ImageRef):
                    images.append(dep)
        self._images[index] = images
        return out

    # --- the two phases ----------------------------------------------------------------

    def graph(
        self, target: str | None, all_stages: bool = False
    ) -> tuple[int, dict[int, list[graph.Edge]], tuple[ImageRef, ...]]:
        """(target index, reachable stages with their edges, external images in first-use
        order). ``all_stages`` takes every stage, as ``docker build --check`` does."""
        index = self.resolve_target(target)
        self.init_globals(index)
        if all_stages:
            stages = {s.index: self.edges(s.index) for s in self.stages}
        else:
            stages = graph.reachable(index, self.edges)
        cycle = graph.find_cycle(stages)
        if cycle is not None:
            raise graph.cycle_error(cycle, self.stage_name)
        for src in sorted(stages):
            for edge in stages[src]:
                if edge.dst > src:
                    if isinstance(edge.instruction, df.Run):
                        message = (
                            f'cannot mount from stage "{self.stage_name(edge.dst)}", '
                            "stage needs to be defined before current command"
                        )
                    else:
                        message = (
                            f'cannot copy from stage "{self.stage_name(edge.dst)}", it needs to be '
                            f'defined before current stage "{self.stage_name(src)}"'
                        )
                    raise PlanError(message, location=edge.instruction.location)
        images: dict[ImageRef, None] = {}
        for src in sorted(stages):
            images.update(dict.fromkeys(self._images[src]))
        return index, stages, tuple(images)

    def initial_state(self, index: int, finished: Mapping[int, StageState]) -> StageState:
        source, platform = self.base(index)
        if isinstance(source, StageRef):
            return finished[source.index].copy()
        state = StageState(env={}, platform=platform, empty_fs=isinstance(source, Scratch))
        if isinstance(source, ImageRef):
            config = self.base_config(index)
            for item in config.env:
                key, _, value = item.partition("=")
                state.env[key] = value
            if config.workdir:
                state.workdir = normalize_workdir("", config.workdir)
            state.shell = tuple(config.shell)
        state.env.setdefault("PATH", DEFAULT_PATH)
        return state

    def plan(
        self,
        target: str | None,
        all_stages: bool = False,
        stage_planner: type[StagePlanner] = StagePlanner,
    ) -> BuildPlan:
        index, stages, images = self.graph(target, all_stages)
        order = sorted(stages)
        ctx = StepContext(
            escape=self.df.escape,
            build_args=self.build_args,
            global_env=self.global_env,
            resolve_copy_from=self.resolve_copy_from,
            resolve_mount_from=self.resolve_mount_from,
            consumed=self.consumed,
        )
        finished: dict[int, StageState] = {}
        planned: list[PlannedStage] = []
        for i in order:
            state = self.initial_state(i, finished)
            planner = stage_planner(state, ctx)
            steps = tuple(planner.plan(ins) for ins in self.commands(i))
            finished[i] = state
            resolved = {name: state.env[name] for name, _ in state.args if name in state.env}
            planned.append(
                PlannedStage(
                    index=i,
                    name=self.stages[i].name,
                    base=self.base(i)[0],
                    platform=str(state.platform),
                    steps=steps,
                    depends_on=tuple(sorted({e.dst for e in stages[i]})),
                    args=tuple(resolved.items()),
                )
            )
        return BuildPlan(
            stages=tuple(planned),
            groups=graph.waves(order, stages),
            target=index,
            images=images,
            warnings=self._unused_warning(),
            build_args=dict(self.build_args),
            platform=str(self.target_platform),
        )

    def _unused_warning(self) -> tuple[str, ...]:
        auto = set(platform_args(self.target_platform, self.build_platform))
        unused = sorted(
            k for k in self.build_args
            if k not in self.consumed and k not in auto and k.upper() not in _BUILTIN_ARGS
            and not k.startswith("BUILDKIT_")
        )
        if not unused:
            return ()
        return (f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed",)
