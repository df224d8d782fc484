"""The stage loop: runs one ``PlannedStage`` step by step and derives its ``Image``.

Per step, as BuildKit does it:

- RUN: a snapshot over the stage's layers, the command in the sandbox (``runtime.run``), the
  snapshot's diff committed as a layer (``runtime.commit``) into the store, ``append``.
- COPY/ADD: a snapshot, G1's ``copy_into`` run inside the namespace (``runtime.call``) with the
  source (context, stage or image) mounted read only, commit, ``append``.
- WORKDIR: the config edit, then the directory created with missing parents, owned by the
  current USER (BuildKit's ``Mkdir`` with ``WithUser``), committed as a layer unless it is ``/``.
- everything else: a config edit and an ``empty_layer`` history entry (``configedit``).

Every layer a step produces is unpacked once per chain id by the runtime and reused as a lower
directory by the next step and by every stage or build that shares it.

A kernel overlay snapshot's diff is written in the background (``_Pending``), as BuildKit
computes a diff only when something needs the blob: its upper dir, complete once the step's
process has ended, already serves the next step (and the stages that copy from this one) as a
lower while the layer is tarred and hashed. A stage has at most one such layer in flight; it is
settled (appended to the image, recorded in the cache) before the next layer is committed, before
any step that needs the image itself (config edits, cache hits) and at the stage's end. The
upper dirs move into the store's snapshots when the build ends (``close``): until then a
snapshot created over them may still name them.

With a build cache (``BuildServices.cache``, see ``executor.cache``) every state has a key;
a RUN, COPY/ADD or WORKDIR whose key has an entry is not run: its recorded layer is appended
(unpacked only when a later step needs a filesystem) and its vertex shows ``CACHED``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from ocibuild.digest import Digest
from ocibuild.dockerfile import model as df
from ocibuild.errors import ExecutionError, Location, OcibuildError
from ocibuild.executor import cache as sc
from ocibuild.executor import configedit as ce
from ocibuild.executor.command import RunSpec
from ocibuild.executor.copy_feed import open_feed
from ocibuild.executor.progress import Progress, Vertex
from ocibuild.executor.run_settings import RunSettings
from ocibuild.fs.safepath import safe_join
from ocibuild.image import Descriptor, History, Image, ImageConfig, Layer, append, chain_ids
from ocibuild.image.config import format_time
from ocibuild.plan.model import (
    BuildPlan,
    ConfigStep,
    ContextRef,
    CopyStep,
    ImageRef,
    PlannedStage,
    RunStep,
    Scratch,
    Source,
    StageRef,
    Step,
)
from ocibuild.store import variants
from ocibuild.store.areas import LAYER_FILES

_T = TypeVar("_T")
_HEREDOC_ONLY = re.compile(r"^<<-?\s*(['\"]?)([^'\"\s]+)\1\s*$")


@dataclass(frozen=True)
class StageResult:
    """A finished stage: its image (layers in the store; unpacked only when something uses
    them, through ``BuildServices.layer_dirs``)."""

    index: int
    image: Image
    key: str = ""  # the build-cache state key of the image (empty without a cache)
    first_new: int = 0  # history entries from here on were added by this build


@dataclass
class _Pending:
    """A layer whose diff is still being written (``StageRunner._commit``): ``snap``'s upper
    dir is complete and serves as a lower meanwhile; ``future`` gives the blob."""

    snap: Any
    created_by: str
    location: Location | None
    future: Future[Any]
    key: str | None = None  # the cache key to record the layer under once it is settled


class Ready(NamedTuple):
    """A stage whose steps have run (``StageRunner.ready``): its image without the layer still
    being written, if any, that layer's dir, and the state key."""

    image: Image
    upper: Path | None
    key: str


class _Tip:
    """A stage's state between steps: the image so far and the layer still being written on
    top of it, if any."""

    def __init__(self, image: Image):
        self.image = image
        self.pending: _Pending | None = None


@dataclass
class BuildServices:
    """What the stage loop needs from the outside, passed in explicitly by ``build``.

    ``images(ref)`` returns a pulled (or named-context) base image with its layers in the store;
    ``context_dir`` is the build context root after ``.dockerignore``; ``mounts`` turns a RUN
    step's plan mounts into the runtime's mount specs (see ``executor.mounts``).
    """

    store: Any  # BlobStore
    runtime: Any  # Runtime
    progress: Progress
    images: Callable[[ImageRef], Image]
    context_dir: Path
    context: Any = None  # executor.context.BuildContext (ignore rules for COPY)
    source_date_epoch: int | None = None  # clamps file mtimes in new layers (rewrite-timestamp)
    epoch: int | None = None  # SOURCE_DATE_EPOCH: the mtime of directories WORKDIR creates
    created: str = ""  # RFC 3339 time stamped on history entries and the config
    hostname: str = "buildkitsandbox"
    run_settings: RunSettings = RunSettings()  # --network, --add-host, --shm-size, --ulimit
    run_mounts: Any = None  # executor.mounts.RunMounts
    cache: Any = None  # executor.cache.StepCache; None: no keys, no lookups, no records
    # The compression (and level) an output will want the target image's layers in: they
    # are then written in it too, in the same pass (``output.recompress`` finds the copy).
    output_compression: tuple[str, int | None] | None = None
    # Uploads those copies to the push's repository while they are written
    # (``registry.streamed.StreamedUploads``), when the build will push.
    uploads: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _layer_dirs: dict[str, Path] = field(default_factory=dict)

    def adopt_upper(self, snap: Any, chain: Digest) -> None:
        """Keep an overlay snapshot's upper dir as the unpacked dir of the layer just committed
        from it: it holds exactly that diff, in the store's overlay whiteout format, so the
        next step need not unpack the layer and the snapshot's removal has little left to do.
        Other snapshot kinds (copy, fuse-overlayfs) are left alone."""
        if not _upper_holds_diff(snap):
            return
        from ocibuild.fs.ownership import RECORD_NAME

        def fill(tmp: Path) -> None:
            os.rename(snap.upper, tmp / LAYER_FILES)
            if os.path.exists(snap.record_path):
                shutil.copyfile(snap.record_path, tmp / RECORD_NAME)

        self.known_dir(chain, Path(self.store.snapshot(chain, fill)) / LAYER_FILES)

    def layer_dir(self, chain: Digest) -> Path | None:
        """The unpacked dir of the layer chain ``chain`` if this build knows one (a committed
        snapshot's upper dir, still where its snapshot left it) or the store keeps one; never
        unpacks anything."""
        with self._lock:
            known = self._layer_dirs.get(str(chain))
        return known if known is not None else self.store.unpacked_layer(chain)

    def known_dir(self, chain: Digest, path: Path) -> None:
        """``path`` holds the unpacked layer ``chain`` for the rest of this build."""
        with self._lock:
            self._layer_dirs[str(chain)] = path

    def layer_dirs(self, image: Image) -> tuple[Path, ...]:
        """Unpacked dirs of ``image``'s layers, top-most first (unpacked once per chain id)."""
        dirs: list[Path] = []
        for layer, chain in zip(image.layers, chain_ids(image.config.diff_ids), strict=True):
            key = str(chain)
            with self._lock:
                known = self._layer_dirs.get(key)
            if known is None:
                known = self.runtime.unpack_layer(chain, self.store.path(layer.digest))
                with self._lock:
                    self._layer_dirs[key] = known
            dirs.append(known)
        return tuple(reversed(dirs))


def _upper_holds_diff(snap: Any) -> bool:
    """Whether ``snap`` is a kernel overlay snapshot, whose upper dir holds its diff alone (a
    fuse-overlayfs one rewrites it when committed, a copy snapshot has none)."""
    return getattr(snap, "kind", None) == "overlay" and os.path.isdir(snap.upper)


def exported_stages(plan: BuildPlan) -> frozenset[int]:
    """The target stage and the stages it is built ``FROM`` (their layers are the image's)."""
    by_index = {s.index: s for s in plan.stages}
    found: set[int] = set()
    index: int | None = plan.target
    while index is not None and index in by_index and index not in found:
        found.add(index)
        base = by_index[index].base
        index = base.index if isinstance(base, StageRef) else None
    return frozenset(found)


def step_name(stage: PlannedStage, number: int, total: int, text: str) -> str:
    """``[build 2/4] RUN make`` (BuildKit pads the step number to the total's width)."""
    width = len(str(total))
    prefix = f"{stage.name} " if stage.name else ""
    return f"[{prefix}{number:>{width}}/{total}] {text}"


def instruction_text(instr: df.Instruction) -> str:
    keyword, _, rest = instr.original.strip().partition(" ")
    return f"{keyword.upper()} {rest.strip()}".strip()


class StageRunner:
    """Runs the stages of one plan; ``results`` fills as stages finish (thread safe)."""

    def __init__(self, services: BuildServices, plan: BuildPlan,
                 local_dir: Callable[[ImageRef], Path | None] | None = None):
        self.s = services
        self.plan = plan
        self._local_dir = local_dir
        self.results: dict[int, StageResult] = {}
        self._lock = threading.Lock()
        # Stages run side by side, each in its thread, and a step that needs another stage
        # (FROM, COPY --from, RUN --mount from=) waits for it, as BuildKit's solver does: set
        # when a stage ends, built or failed. A failure stops the others at their next step.
        self._ended = {s.index: threading.Event() for s in plan.stages}
        # Set earlier, when a stage's steps have run and only its last layer may still be
        # being written: what COPY --from needs (its dirs and key) is known then.
        self._ready = {s.index: threading.Event() for s in plan.stages}
        self._ready_tips: dict[int, Ready] = {}
        self._failed = threading.Event()
        self.exported = exported_stages(plan)
        self._current = threading.local()  # the stage a thread runs (a stage is one thread)
        # Removing a snapshot of many files costs as much as writing it: done in the
        # background, overlapping the next steps and the export; ``close`` waits for it.
        self._remover = ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot-rm")
        self._removals: list[Future[None]] = []
        # Diffs written in the background (``_Pending``): one per stage at a time, plus a fed
        # copy's (``_fed_call``), which starts while the one before it may still be written:
        # queued behind it, it would stall its copy once the feed's pipe is full.
        self._committer = ThreadPoolExecutor(max_workers=2 * max(1, len(plan.stages)),
                                             thread_name_prefix="commit")
        self._to_adopt: list[tuple[Any, Digest]] = []  # settled snapshots, moved in by close

    def discard(self, snap: Any) -> None:
        self._removals.append(self._remover.submit(self.s.runtime.remove, snap))

    def close(self) -> None:
        """Move the upper dirs of the layers written in the background into the store (no
        snapshot will name them any more), then wait until every used snapshot is removed
        (the first failure is raised)."""
        self._committer.shutdown(wait=True)  # idle: every stage settled or drained its layer
        with self._lock:
            adopt, self._to_adopt = self._to_adopt, []
        for snap, chain in adopt:
            with contextlib.suppress(OSError):  # a later build unpacks the blob instead
                self.s.adopt_upper(snap, chain)
            self.discard(snap)
        self._remover.shutdown(wait=True)
        for f in self._removals:
            f.result()

    # -- sources ---------------------------------------------------------------------------

    def result(self, index: int) -> StageResult:
        """Stage ``index``'s result, once it is built (``StageStopped`` if it failed)."""
        return _wait_for(self._ended, self.results, index, self._lock)

    def ready(self, index: int) -> Ready:
        """Stage ``index`` once its steps have run; its last layer may still be being written
        (``StageStopped`` if it failed before)."""
        return _wait_for(self._ready, self._ready_tips, index, self._lock)

    def source_lowers(self, source: Source) -> tuple[Path, ...]:
        """The read-only layer stack a COPY/mount source stands for."""
        match source:
            case ContextRef():
                return (self.s.context_dir,)
            case StageRef(index=index):
                image, upper, _ = self.ready(index)
                return self._dirs(image, upper)
            case ImageRef():
                local = self._local_dir(source) if self._local_dir else None
                if local is not None:
                    return (local,)
                return self.s.layer_dirs(self.s.images(source))
            case Scratch():
                return ()
        raise AssertionError(source)

    def _layered(self, source: Source) -> bool:
        """Whether ``source`` is a stack of the store's layer dirs (a stage, a pulled image),
        not a plain directory (the context, a local ``--build-context``)."""
        if isinstance(source, StageRef):
            return True
        if isinstance(source, ImageRef):
            return self._local_dir is None or self._local_dir(source) is None
        return False

    def base(self, stage: PlannedStage) -> tuple[Image, str]:
        """The stage's starting image and the FROM text for progress."""
        match stage.base:
            case Scratch():
                os_name, _, rest = stage.platform.partition("/")
                arch, _, variant = rest.partition("/")
                cfg = ce.empty_config(os_name or "linux", arch or "amd64", variant)
                return Image(ImageConfig(cfg)), "FROM scratch"
            case StageRef(index=index):
                done = self.result(index)
                cfg = ce.start_stage(done.image.config.to_json())
                return Image(ImageConfig(cfg), done.image.layers), ""
            case ImageRef(ref=ref):
                image = self.s.images(stage.base)
                cfg = ce.start_stage(image.config.to_json())
                return Image(ImageConfig(cfg), image.layers), f"FROM {ref}"
        raise AssertionError(stage.base)

    # -- the loop --------------------------------------------------------------------------

    def run_stage(self, stage: PlannedStage) -> StageResult:
        try:
            return self._run_stage(stage)
        except BaseException:
            self._failed.set()
            raise
        finally:
            for events in (self._ready, self._ended):
                if stage.index in events:
                    events[stage.index].set()

    def _run_stage(self, stage: PlannedStage) -> StageResult:
        total = len(stage.steps) + 1
        image, from_text = self.base(stage)
        if from_text:
            with self.s.progress.step(step_name(stage, 1, total, from_text)):
                pass
        cmd_set = False
        self._current.index = stage.index
        key = self._base_key(stage)
        first_new = (self.result(stage.base.index).first_new if isinstance(stage.base, StageRef)
                     else len(image.config.history))
        tip = _Tip(image)
        try:
            for number, step in enumerate(stage.steps, start=2):
                for index in _stages_used(step):
                    self.ready(index)  # before the vertex starts: waiting is not running
                if self._failed.is_set():
                    raise StageStopped(f"stage {stage.index} stopped: another stage failed")
                name = step_name(stage, number, total, instruction_text(step.instruction))
                vertex = self.s.progress.vertex(name)
                try:
                    key = self._cached_step(stage, step, tip, cmd_set, vertex, key)
                except OcibuildError as exc:
                    if exc.location is None:
                        exc.location = step.instruction.location
                    vertex.error(exc.message)
                    raise
                except Exception as exc:
                    vertex.error(str(exc))
                    raise ExecutionError(f"{step.instruction.keyword}: {exc}",
                                         location=step.instruction.location) from exc
                vertex.done()
                if isinstance(step, ConfigStep) and isinstance(step.instruction, df.Cmd):
                    cmd_set = True
            upper = tip.pending.snap.upper if tip.pending is not None else None
            with self._lock:
                self._ready_tips[stage.index] = Ready(tip.image, upper, key)
            if stage.index in self._ready:
                self._ready[stage.index].set()
            image = self._settle(tip)
        finally:
            self._drain(tip)
        if self.s.created:
            image = sc.restamp(image, first_new)
        result = StageResult(stage.index, image, key, first_new)
        with self._lock:
            self.results[stage.index] = result
        return result

    # -- the build cache (executor.cache) -----------------------------------------------------

    def _base_key(self, stage: PlannedStage) -> str:
        cache = self.s.cache
        if cache is None:
            return ""
        if isinstance(stage.base, StageRef):
            return self.result(stage.base.index).key
        image = self.s.images(stage.base) if isinstance(stage.base, ImageRef) else None
        return str(cache.base_key(sc.base_identity(stage, image)))

    def _cached_step(self, stage: PlannedStage, step: Step, tip: _Tip, cmd_set: bool,
                     vertex: Vertex, parent: str) -> str:
        """Run ``step`` on ``tip`` unless the cache has what it makes (then append that, no
        snapshot, and mark the vertex CACHED); returns the new state's key. Keys before the
        step depend on the config only, so a layer still being written need not be settled."""
        cache = self.s.cache
        if cache is None:
            self.run_step(stage, step, tip, cmd_set, vertex)
            return ""
        key = sc.key_before(self, parent, step, tip.image)
        makes_layer = not isinstance(step, ConfigStep) or isinstance(step.instruction, df.Workdir)
        if key is not None and makes_layer:
            hit = cache.lookup(key)
            if hit is not None:
                image = self._settle(tip)
                if isinstance(step, ConfigStep):  # WORKDIR: its config edit, then its layer
                    cfg, _ = ce.apply_config(image.config.to_json(), step.instruction,
                                             cmd_set=cmd_set, created=self.s.created or None)
                    image = image.with_config(ImageConfig(cfg))
                # As BuildKit: the layer and its time come from the cache, the history text
                # from this Dockerfile (a key leaves out spacing and locations).
                history = History(created=hit.history.created,
                                  created_by=self._created_by(step, image),
                                  comment=ce.HISTORY_COMMENT)
                vertex.cached()
                tip.image = append(image, hit.layer, history)
                return key
        before, earlier = tip.image, tip.pending
        self.run_step(stage, step, tip, cmd_set, vertex)
        if key is None:
            key = sc.key_after(parent, step, self._settle(tip))
        if makes_layer:
            if tip.pending is not None and tip.pending is not earlier:
                tip.pending.key = key  # this step's layer: recorded once it is settled
            else:
                self._record(key, before, tip.image)
        return key

    def _record(self, key: str, before: Image, after: Image) -> None:
        cache = self.s.cache
        if cache is not None:
            with contextlib.suppress(OSError):  # a failed write only costs a later miss
                cache.record(key, before, after)

    def _created_by(self, step: Step, image: Image) -> str:
        """The history text of a step that makes a layer, on the state ``image`` (for
        WORKDIR: with its config edit applied)."""
        cfg = image.config.to_json()
        match step:
            case RunStep():
                return ce.run_created_by(run_argv(cfg, step)[0], step.history_args)
            case CopyStep(instruction=df.CopyBase() as instr):
                return ce.copy_created_by(instr, step.sources, step.dest, step.chown,
                                          step.chmod, step.parents)
        return f"WORKDIR {cfg['config']['WorkingDir']}"

    def run_step(self, stage: PlannedStage, step: Step, tip: _Tip, cmd_set: bool,
                 vertex: Vertex) -> None:
        """Run ``step`` on ``tip``: its new image, or its layer pending on top of it."""
        match step:
            case RunStep():
                self._run(stage, step, tip, vertex)
            case CopyStep():
                self._copy(step, tip)
            case ConfigStep(instruction=instr):
                image = self._settle(tip)
                cfg, hist = ce.apply_config(image.config.to_json(), instr, cmd_set=cmd_set,
                                            created=self.s.created or None)
                tip.image = image.with_config(ImageConfig(cfg))
                if isinstance(instr, df.Workdir):
                    wd = cfg["config"]["WorkingDir"]
                    if wd != "/":
                        user = (cfg.get("config") or {}).get("User", "")
                        self._commit_call(tip, f"WORKDIR {wd}", make_workdir, wd, user,
                                          self.s.epoch, location=instr.location)
                        return
                if hist is not None:
                    tip.image = append(tip.image, None, History.from_json(hist))
            case _:
                raise AssertionError(step)

    # -- RUN -------------------------------------------------------------------------------

    def _run(self, stage: PlannedStage, step: RunStep, tip: _Tip, vertex: Vertex) -> None:
        cfg = tip.image.config.to_json()
        argv, script = run_argv(cfg, step)
        env = ce.env_map(cfg)
        env.update(dict(step.build_args))
        inner = cfg.get("config") or {}
        created_by = self._created_by(step, tip.image)
        runtime = self.s.runtime
        snap = runtime.new_snapshot(self._lowers(tip))
        try:
            with contextlib.ExitStack() as stack:
                mounts: list[Any] = []
                if self.s.run_mounts is not None:
                    mounts, extra_env = stack.enter_context(
                        self.s.run_mounts.prepare(self, step, script, snap))
                    agent = extra_env.pop("SSH_AUTH_SOCK", None)
                    env.update(extra_env)
                    if agent is not None:  # as BuildKit: unless the RUN's env has one
                        env.setdefault("SSH_AUTH_SOCK", agent)
                settings = self.s.run_settings
                spec = RunSpec(
                    argv=tuple(argv),
                    env=tuple(f"{k}={v}" for k, v in env.items()),
                    cwd=inner.get("WorkingDir") or "/",
                    user=inner.get("User") or "",
                    hostname=self.s.hostname,
                    # RUN --network=default (or none given) is the build's --network.
                    network=(step.network if step.network != "default"  # type: ignore[arg-type]
                             else settings.network),
                    mounts=tuple(mounts),
                    extra_hosts=settings.extra_hosts,
                    security=step.security,  # type: ignore[arg-type]
                    shm_size=settings.shm_size,
                    ulimits=settings.ulimits,
                )
                code = runtime.run(snap, spec, vertex.log)
            if code != 0:
                shown = " ".join(argv)
                raise ExecutionError(
                    f'process "{shown}" did not complete successfully: exit code: {code}',
                    location=step.instruction.location,
                )
        except BaseException:
            self.discard(snap)
            raise
        self._commit(tip, snap, created_by, step.instruction.location)

    # -- COPY / ADD ------------------------------------------------------------------------

    def _copy(self, step: CopyStep, tip: _Tip) -> None:
        from ocibuild.executor.copy import copy_into

        cfg = tip.image.config.to_json()
        workdir = (cfg.get("config") or {}).get("WorkingDir") or "/"
        instr = step.instruction
        assert isinstance(instr, df.CopyBase)
        created_by = self._created_by(step, tip.image)
        roots = {"src": self.source_lowers(step.source)}
        ignore = None
        owners = None  # a stage's or image's true owners its layer dirs could not hold
        if isinstance(step.source, ContextRef) and self.s.context is not None:
            ignore = self.s.context.ignore
        elif self._layered(step.source):
            owners = self.s.runtime.source_record(roots["src"])
        # A local --build-context is sent as the build context is (owners reset, its own
        # .dockerignore read by copy_into): any source neither a stage, an image nor scratch.
        local = isinstance(step.source, ImageRef) and not self._layered(step.source)
        # One plain source: its copy reports its entries in layer order (``copy_feed``).
        feed = (not step.add and len(step.sources) == 1 and not step.heredocs
                and not step.excludes and not step.parents)
        self._commit_call(tip, created_by, copy_into, step, workdir, ignore, owners, None,
                          "src", local, roots=roots, location=step.instruction.location,
                          feed=feed)

    # -- commit helpers --------------------------------------------------------------------

    def _commit_call(self, tip: _Tip, created_by: str, fn: Callable[..., Any], *args: Any,
                     roots: Mapping[str, Sequence[Path]] | None = None,
                     location: Location | None = None, feed: bool = False) -> None:
        """Run ``fn`` in a snapshot of ``tip`` (``runtime.call``) and commit the result.

        ``feed``: ``fn`` is a copy that can report its entries (``copy_feed``); in a kernel
        overlay snapshot whose files hold their owners, its layer is then written while it
        runs, instead of after it."""
        runtime = self.s.runtime
        snap = runtime.new_snapshot(self._lowers(tip))
        if feed and _upper_holds_diff(snap) and runtime.isolation.owns_files:
            self._fed_call(tip, snap, created_by, fn, args, dict(roots or {}), location)
            return
        try:
            runtime.call(snap, fn, *args, roots=dict(roots or {}))
        except BaseException:
            self.discard(snap)
            raise
        self._commit(tip, snap, created_by, location)

    def _fed_call(self, tip: _Tip, snap: Any, created_by: str, fn: Callable[..., Any],
                  args: tuple[Any, ...], roots: dict[str, Sequence[Path]],
                  location: Location | None) -> None:
        """``_commit_call`` with the layer written beside the copy, from its feed: the
        commit starts first (beside the stage's layer still in flight, if any) and reads what
        the copy reports until it ends; the layer in flight is settled after the copy."""
        read_fd, write_fd = open_feed()
        try:
            future = self._committer.submit(self._write_layer, snap, self._want(), read_fd)
        except BaseException:
            os.close(read_fd)
            os.close(write_fd)
            self.discard(snap)
            raise
        try:
            try:
                self.s.runtime.call(snap, fn, *args, roots=roots, feed=write_fd)
            finally:
                os.close(write_fd)  # the commit sees the end of a copy that died
            self._settle(tip)  # one layer in flight per stage
        except BaseException:
            with contextlib.suppress(BaseException):
                future.result()
            self.discard(snap)
            raise
        tip.pending = _Pending(snap, created_by, location, future)

    def _want(self) -> tuple[str, int | None] | None:
        """The compression the build's output wants a layer of the current stage in, when it
        is written (None: the stage is not exported)."""
        if getattr(self._current, "index", None) not in self.exported:
            return None
        return self.s.output_compression

    def _lowers(self, tip: _Tip) -> tuple[Path, ...]:
        return self._dirs(tip.image, tip.pending.snap.upper if tip.pending else None)

    def _dirs(self, image: Image, upper: Path | None) -> tuple[Path, ...]:
        """The layer dirs of ``image``, top-most first, under the upper dir of a layer still
        being written on top of it."""
        dirs = self.s.layer_dirs(image)
        return dirs if upper is None else (upper, *dirs)

    def _commit(self, tip: _Tip, snap: Any, created_by: str, location: Location | None) -> None:
        """Diff ``snap`` into a layer in the store on top of ``tip`` (``created_by`` already
        carries `` # buildkit`` where BuildKit puts it); takes ``snap`` over. A kernel overlay
        snapshot's diff is written in the background (the module docstring says why), any
        other's now: fuse-overlayfs rewrites its upper dir when committing it, and a copy
        snapshot has no dir that holds the diff alone."""
        want = self._want()
        if _upper_holds_diff(snap):
            try:
                self._settle(tip)  # one layer in flight per stage
            except BaseException:
                self.discard(snap)
                raise
            future = self._committer.submit(self._write_layer, snap, want)
            tip.pending = _Pending(snap, created_by, location, future)
            return
        try:
            blob = self._write_layer(snap, want)
        except BaseException:
            self.discard(snap)
            raise
        tip.image = self._append(tip.image, blob, created_by)
        self.discard(snap)  # no dir of it holds the diff alone: a later step unpacks the blob

    def _write_layer(self, snap: Any, want: tuple[str, int | None] | None,
                     feed: int | None = None) -> Any:
        """The layer blob of ``snap``'s diff, moved into the store in the background; with
        ``want``, a copy in that compression too (and streamed to the push's registry); with
        ``feed``, written from the copy's reports as it runs (``Runtime.commit``; the
        descriptor is closed here)."""
        try:
            return self._write_blob(snap, want, feed)
        finally:
            if feed is not None:
                os.close(feed)

    def _write_blob(self, snap: Any, want: tuple[str, int | None] | None,
                    feed: int | None) -> Any:
        store = self.s.store
        tmp = store.tempdir("layer-")
        also = (tmp / "copy", *want) if want is not None and want[0] != "uncompressed" else None
        upload = None
        if also is not None and self.s.uploads is not None:
            upload = self.s.uploads.start(also[0])
        try:
            # Uncompressed, as BuildKit keeps a snapshot: an output that writes or pushes the
            # image compresses its layers (``output.recompress``), from the copy made here
            # when the build knew it would.
            blob = self.s.runtime.commit(snap, tmp / "layer", "none", None,
                                         self.s.source_date_epoch, also, feed)
        except BaseException:
            if upload is not None:
                upload.cancel()
            _rmtree(tmp)
            raise
        if upload is not None:
            if blob.copy is not None and also is not None and blob.copy.path == also[0]:
                upload.finish(blob.copy.digest, blob.copy.size)  # before the copy moves
            else:
                upload.cancel()
        # Hashed as it was written, on the store's filesystem: moved in, not copied, and in
        # the background: the next step needs the snapshot, not the blob (``build`` flushes
        # the store before its outputs read it). One writer thread: the copy goes first, the
        # layer's cleanup removes ``tmp`` after both.
        if blob.copy is not None and also is not None:
            copy = blob.copy
            store.adopt_later(copy.path, copy.digest, copy.size, lambda: None)
            variants.record(store, blob.diff_id, also[1], also[2], copy.digest, copy.size)
        store.adopt_later(blob.path, blob.digest, blob.size, lambda: _rmtree(tmp))
        return blob

    def _append(self, image: Image, blob: Any, created_by: str) -> Image:
        layer = Layer(Descriptor(blob.media_type, blob.digest, blob.size), blob.diff_id)
        history = History(created=self.s.created or None, created_by=created_by,
                          comment=ce.HISTORY_COMMENT)
        return append(image, layer, history)

    def _settle(self, tip: _Tip) -> Image:
        """``tip``'s image with its pending layer, once written, appended (and recorded in
        the cache); its error, if writing it failed, located at the step that made it."""
        pending = tip.pending
        if pending is None:
            return tip.image
        tip.pending = None
        try:
            blob = pending.future.result()
        except OcibuildError as exc:
            self.discard(pending.snap)
            if exc.location is None:
                exc.location = pending.location
            raise
        except Exception as exc:
            self.discard(pending.snap)
            keyword = pending.created_by.split(" ", 1)[0]
            raise ExecutionError(f"{keyword}: {exc}", location=pending.location) from exc
        before = tip.image
        tip.image = self._append(before, blob, pending.created_by)
        chain = chain_ids(tip.image.config.diff_ids)[-1]
        # Its upper dir stays where the snapshots made since name it; ``close`` moves it in.
        self.s.known_dir(chain, pending.snap.upper)
        with self._lock:
            self._to_adopt.append((pending.snap, chain))
        if pending.key is not None:
            self._record(pending.key, before, tip.image)
        return tip.image

    def _drain(self, tip: _Tip) -> None:
        """After a failure: wait for the layer still being written and drop its snapshot."""
        pending, tip.pending = tip.pending, None
        if pending is not None:
            with contextlib.suppress(BaseException):
                pending.future.result()
            self.discard(pending.snap)


class StageStopped(ExecutionError):
    """A stage ended early because another stage failed (the build reports that failure)."""


def _wait_for(events: Mapping[int, threading.Event], table: Mapping[int, _T], index: int,
              lock: threading.Lock) -> _T:
    """``table[index]`` once ``events[index]`` is set; ``StageStopped`` if the stage ended
    without filling it."""
    event = events.get(index)
    if event is not None:
        event.wait()
    with lock:
        if index in table:
            return table[index]
    if event is not None:
        raise StageStopped(f"stage {index} failed")
    raise ExecutionError(f"stage {index} has not been built yet")


def _stages_used(step: Step) -> list[int]:
    """The stages ``step`` reads from: COPY --from and RUN --mount from= a stage."""
    match step:
        case CopyStep(source=StageRef(index=index)):
            return [index]
        case RunStep(mounts=mounts):
            return [m.source.index for m in mounts if isinstance(m.source, StageRef)]
    return []


def run_argv(cfg: dict[str, Any], step: RunStep) -> tuple[list[str], tuple[str, str] | None]:
    """RUN's argv under the stage's SHELL, heredocs applied as BuildKit's ``dispatchRun`` does.

    Returns ``(argv, script)``; ``script`` is ``(name, data)`` when a single heredoc with a
    shebang becomes a file run from ``/dev/pipes/<name>`` (the caller mounts it there).
    """
    command = step.command
    if step.heredocs and isinstance(command, df.ShellForm):
        text = command.text
        m = _HEREDOC_ONLY.match(text.strip())
        if m and len(step.heredocs) == 1:
            doc = step.heredocs[0]
            if doc.content.startswith("#!"):
                return ce.with_shell(cfg, df.ShellForm(f"/dev/pipes/{doc.name}")), (doc.name,
                                                                                    doc.content)
            return ce.with_shell(cfg, df.ShellForm(doc.content)), None
        parts = [text]
        for doc in step.heredocs:  # the shell reads these bodies: as written (<<- tabs kept)
            parts.append("\n" + (doc.content if doc.raw is None else doc.raw) + doc.name)
        return ce.with_shell(cfg, df.ShellForm("".join(parts))), None
    return ce.with_shell(cfg, command), None


def make_workdir(ctx: Any, path: str, user: str, epoch: int | None = None) -> None:
    """Create ``path`` with missing parents (0755, plus setgid under a setgid parent) inside
    ``ctx.root``, owned by ``user`` resolved like COPY --chown (BuildKit's Mkdir ``WithUser``;
    without a USER, root and the setgid parent's group); existing dirs are untouched. With
    ``SOURCE_DATE_EPOCH`` (``epoch``) the directories made have it as their times (current
    BuildKit's ``WithCreatedTime``, dockerfile 1.16)."""
    from ocibuild.executor.users import resolve_chown

    owner = resolve_chown(ctx.root, user) if user else None
    made: list[Path] = []
    current = ""
    for part in [p for p in path.split("/") if p]:
        current = f"{current}/{part}"
        real = safe_join(ctx.root, current)
        if os.path.lexists(real):
            if not os.path.isdir(real):
                raise ExecutionError(f"mkdir {path}: {current} is not a directory")
            continue
        os.mkdir(real, 0o755)
        # BuildKit's Mkdir is a bare os.Mkdir, chowned only WithUser: under a setgid parent
        # the kernel gives the new directory the setgid bit and, without a USER, its group.
        inherited = os.stat(real).st_mode & stat.S_ISGID
        os.chmod(real, 0o755 | inherited)
        uid, gid = owner or (0, os.stat(os.path.dirname(real)).st_gid if inherited else 0)
        ctx.chown(real, uid, gid)
        made.append(real)
    if epoch is not None:
        for real in made:  # after the last mkdir: each one changed its parent's mtime
            os.utime(real, (epoch, epoch), follow_symlinks=False)


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def now_rfc3339(epoch: int | None = None) -> str:
    return format_time(epoch if epoch is not None else time.time())
