"""``build(options) -> BuildResult``: the whole build, and ``run_build_cli`` for ``python -m
ocibuild [flags] CONTEXT``.

Data flow (DESIGN.md): context + Dockerfile -> parse -> resolve FROM configs -> plan -> run the
stages (all at once, in threads; a step that needs another stage waits for it) -> final
image -> outputs. Only the stages the target needs run; every external image is pulled once;
an output appears whole or not at all (each writer builds beside its destination and
renames).

Warnings (unused build args, the rootless single-id limitation) reach the user once each on
the progress stream (``Progress.warn``) and are returned in ``BuildResult.warnings``. Pulled
images and the built image are gc roots of the store (``ocibuild prune`` keeps what the next
build of the same Dockerfile needs).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocibuild.digest import Digest
from ocibuild.errors import PlanError, UsageError
from ocibuild.executor.progress import make_progress
from ocibuild.executor.pull import ImageSource, NamedContext
from ocibuild.executor.stage import BuildServices, StageRunner, StageStopped, now_rfc3339
from ocibuild.image import Image, ImageConfig
from ocibuild.image.platform import parse_platform
from ocibuild.plan.model import BuildPlan, CopyStep, RunStep


@dataclass(frozen=True)
class BuildOptions:
    """Everything a build needs, as ``docker buildx build`` spells it. ``outputs`` are raw
    ``--output`` specs; ``secrets``/``ssh``/``build_contexts`` raw flag values."""

    context: str
    dockerfile: str | None = None
    tags: tuple[str, ...] = ()
    target: str | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    platform: str | None = None
    outputs: tuple[str, ...] = ()
    push: bool = False
    secrets: tuple[str, ...] = ()
    ssh: tuple[str, ...] = ()
    build_contexts: tuple[str, ...] = ()
    progress: str = "auto"
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    isolation: str = "auto"
    snapshotter: str = "auto"
    insecure_registries: tuple[str, ...] = ()
    compression: str = "gzip"
    compression_level: int | None = None
    metadata_file: str | None = None
    iidfile: str | None = None
    no_cache: bool = False
    allow: tuple[str, ...] = ()  # entitlements (``--allow``): security.insecure, network.host
    # Every RUN's (``executor.run_settings``): --network, --add-host, --shm-size, --ulimit.
    network: str = "default"
    add_hosts: tuple[str, ...] = ()
    shm_size: str | None = None
    ulimits: tuple[str, ...] = ()
    store_root: Path | None = None
    # Layer file times clamped to SOURCE_DATE_EPOCH whatever the outputs say: how the build of
    # several platforms passes its outputs' ``rewrite-timestamp`` to each platform's build.
    rewrite_timestamp: bool = False
    progress_stream: Any = None  # a text stream; stderr by default


@dataclass(frozen=True)
class BuildResult:
    """The final image, its digests (OCI manifest unless every output asked for Docker media
    types), the stages that ran (Dockerfile indexes, in order) and what was written."""

    image: Image
    manifest_digest: Digest
    config_digest: Digest
    stages: tuple[int, ...]
    outputs: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)


def _kv(items: list[str] | tuple[str, ...], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid {what} {item!r}: want KEY=VALUE")
        if not sep:
            env = os.environ.get(key)
            if env is None:
                continue  # like docker: --build-arg NAME takes NAME from the environment
            value = env
        out[key] = value
    return out


def options_from_args(args: argparse.Namespace) -> BuildOptions:
    progress = "quiet" if getattr(args, "quiet", False) else args.progress
    return BuildOptions(
        context=args.context,
        dockerfile=args.file,
        tags=tuple(args.tag),
        target=args.target,
        build_args=_kv(args.build_arg, "--build-arg"),
        platform=args.platform,
        outputs=tuple(args.output),
        push=args.push,
        secrets=tuple(args.secret),
        ssh=tuple(args.ssh),
        build_contexts=tuple(getattr(args, "build_context", []) or ()),
        progress=progress,
        labels=_kv(args.label, "--label"),
        annotations=_kv(args.annotation, "--annotation"),
        isolation=args.isolation,
        snapshotter=args.snapshotter,
        insecure_registries=tuple(args.insecure_registry),
        compression=args.compression,
        compression_level=args.compression_level,
        metadata_file=args.metadata_file,
        iidfile=args.iidfile,
        no_cache=args.no_cache,
        allow=_entitlements(getattr(args, "allow", None) or []),
        network=getattr(args, "network", None) or "default",
        add_hosts=tuple(getattr(args, "add_host", None) or ()),
        shm_size=getattr(args, "shm_size", None),
        ulimits=tuple(getattr(args, "ulimit", None) or ()),
    )


ENTITLEMENTS = ("security.insecure", "network.host")


def _entitlements(values: list[str]) -> tuple[str, ...]:
    """``--allow`` values (comma-separated too), checked against buildx's names."""
    names = tuple(dict.fromkeys(v.strip() for value in values for v in value.split(",")
                                if v.strip()))
    for name in names:
        if name not in ENTITLEMENTS:
            raise UsageError(f"--allow {name}: unknown entitlement (one of: "
                             f"{', '.join(ENTITLEMENTS)})")
    return names


def _check_entitlements(plan: Any, allow: tuple[str, ...]) -> None:
    """A RUN --security=insecure needs ``--allow security.insecure`` and a RUN --network=host
    ``--allow network.host`` (which ``--network host`` implies, as buildx adds it): BuildKit
    refuses an entitlement the build is not given."""
    for stage in plan.stages:
        for step in stage.steps:
            if not isinstance(step, RunStep):
                continue
            wanted = ("security.insecure" if step.security == "insecure" else None,
                      "network.host" if step.network == "host" else None)
            for name in wanted:
                if name is not None and name not in allow:
                    raise PlanError(f"granting entitlement {name} is not allowed: "
                                    f"pass --allow {name}", location=step.instruction.location)


def run_build_cli(args: argparse.Namespace) -> int:
    """The build verb: exit 0 only when every output exists."""
    if getattr(args, "load", False):
        raise UsageError("--load needs a docker daemon",
                         hint="write a docker archive instead: --output type=docker,dest=FILE")
    options = options_from_args(args)
    if args.cache_from or args.cache_to:
        # XXX: no cache import/export yet; say so rather than ignore the flags silently.
        print("warning: --cache-from/--cache-to are not supported yet and were ignored",
              file=sys.stderr)
    attestations = [getattr(args, "provenance", None), getattr(args, "sbom", None),
                    *(getattr(args, "attest", None) or ())]
    if any(a is not None and a.strip().lower() not in ("false", "0", "disabled")
           for a in attestations):
        print("warning: provenance and SBOM attestations are not made; "
              "--provenance/--sbom/--attest were ignored", file=sys.stderr)
    result = build(options)  # its warnings went to stderr through the progress
    if options.progress == "quiet" and not _to_stdout(options):
        from ocibuild.output.export import image_id

        # buildx -q prints the image id: the config digest (the index digest for several
        # platforms), an empty line when no output carries an image; nothing when an output
        # goes to stdout (the archive would end with it).
        print(image_id(result.metadata))
    return 0


def _to_stdout(options: BuildOptions) -> bool:
    from ocibuild.output.spec import parse_outputs

    specs = parse_outputs(options.outputs, options.tags, options.push)
    return any(o.dest == "-" for o in specs)


def build(options: BuildOptions) -> BuildResult:
    """Build the target stage and write the outputs. Raises an ``OcibuildError`` subclass."""
    platforms = _platforms(options.platform)
    if len(platforms) > 1:
        return _build_platforms(options, platforms)
    return _build_one(options)


def _platforms(spec: str | None) -> list[str]:
    """``--platform a,b`` -> ``["a", "b"]`` (duplicates dropped, order kept)."""
    if not spec:
        return []
    return list(dict.fromkeys(p.strip() for p in spec.split(",") if p.strip()))


def _build_platforms(options: BuildOptions, platforms: list[str]) -> BuildResult:
    """``--platform a,b``: the target built once per platform (stages that do not depend on
    the target platform come from the build cache after the first), then one index per output
    (``output.multiplatform``). A RUN in a stage of a platform the host cannot execute fails
    with the command's error: there is no emulation."""
    from dataclasses import replace

    from ocibuild.image.platform import parse_platform
    from ocibuild.output.export import plan_outputs
    from ocibuild.output.multiplatform import check_outputs, write_index_outputs

    outputs = plan_outputs(options)
    check_outputs(outputs)
    if options.context == "-":
        raise UsageError("several --platform values need a context directory, not stdin")
    try:
        parsed = [parse_platform(p) for p in platforms]
    except ValueError as exc:
        raise UsageError(f"--platform: {exc}") from exc
    images = []
    results = []
    rewrite = options.rewrite_timestamp or any(out.rewrite_timestamp for out in outputs)
    for spec, platform in zip(platforms, parsed, strict=True):
        one = replace(options, platform=spec, outputs=(), tags=(), push=False,
                      metadata_file=None, iidfile=None, rewrite_timestamp=rewrite)
        result = _build_one(one)
        results.append(result)
        images.append((platform, result.image))
    from ocibuild.store.blobs import BlobStore

    progress = make_progress(options.progress, options.progress_stream)
    store = BlobStore(options.store_root)
    sources = ImageSource(store, lambda: _client(options, outputs), {})
    try:
        written, metadata, digest = write_index_outputs(outputs, images, store, sources,
                                                        options, progress)
    finally:
        progress.close()
        sources.close()
        store.close()
    result = BuildResult(
        image=results[0].image, manifest_digest=digest, config_digest=results[0].config_digest,
        stages=results[0].stages, outputs=tuple(written),
        warnings=tuple(dict.fromkeys(w for r in results for w in r.warnings)),
        metadata=metadata,
    )
    if options.metadata_file or options.iidfile:
        from ocibuild.output.export import write_metadata

        write_metadata(options, result)
    return result


def _build_one(options: BuildOptions) -> BuildResult:
    """The build of one platform (or of the default one)."""
    from ocibuild.dockerfile.parser import parse
    from ocibuild.executor.context import load_dockerfile, open_context
    from ocibuild.executor.run_settings import parse_run_settings
    from ocibuild.output.export import (
        layer_epoch,
        output_compression,
        plan_outputs,
        source_date_epoch,
        streamed_push_target,
        write_outputs,
    )
    from ocibuild.plan.planner import base_images, make_plan
    from ocibuild.store.blobs import BlobStore

    outputs = plan_outputs(options)  # validate every flag before any work
    run_settings = parse_run_settings(options.network, options.add_hosts, options.shm_size,
                                      options.ulimits)
    secrets, ssh = _secrets(options.secrets), _ssh(options.ssh)
    epoch = source_date_epoch(options)
    progress = make_progress(options.progress, options.progress_stream)
    warnings: list[str] = []

    def warn(message: str) -> None:
        if message not in warnings:
            warnings.append(message)
        progress.warn(message)

    for out in outputs:
        if out.ignored:
            warn(f"--output type={out.type}: ignored attribute(s) {', '.join(out.ignored)}")
    store = BlobStore(options.store_root)
    stack = contextlib.ExitStack()
    named = {nc.name: nc for nc in (NamedContext.parse(s) for s in options.build_contexts)}
    images = ImageSource(store, lambda: _client(options, outputs), named,
                         on_pull=lambda ref: progress.vertex(f"[internal] pull {ref}"))
    runtime = None
    mounts = None
    runner = None
    cache = None
    detecting = None
    uploads = None
    try:
        from ocibuild.executor.runtime import Runtime

        # The sandbox probes (short-lived processes) run while the Dockerfile is read and the
        # base images are resolved; what they found is used, their errors raised, after that.
        pool = ThreadPoolExecutor(1, thread_name_prefix="ocibuild-detect")
        detecting = pool.submit(Runtime.detect, isolation=options.isolation,
                                snapshotter=options.snapshotter, store=store, warn=warn)
        pool.shutdown(wait=False)
        context = stack.enter_context(open_context(options.context, options.dockerfile))
        with progress.step("[internal] load build definition from "
                           f"{options.dockerfile or 'Dockerfile'}"):
            name, text = load_dockerfile(context, options.dockerfile)
            dockerfile = parse(text, name)
        bases = {}
        for ref in base_images(dockerfile, options.target, options.build_args, options.platform,
                               named=named):
            with progress.step(f"[internal] load metadata for {ref.ref}"):
                bases[ref.ref] = images.base_config(ref)
        plan = make_plan(dockerfile, bases, options.target, options.build_args, options.platform,
                         named=named)
        _check_entitlements(plan, (*options.allow, *(
            ("network.host",) if options.network == "host" else ())))
        for message in plan.warnings:
            warn(message)
        from ocibuild.executor.mounts import RunMounts

        runtime = detecting.result()
        # A plan with RUN fails here, before any layer is pulled, naming what is missing
        # (``warn``: the single-id limitation is shown when the first RUN starts).
        if any(isinstance(step, RunStep) for st in plan.stages for step in st.steps):
            runtime.require_run()
        mounts = RunMounts(store, context.root, images, secrets, ssh, context=context)
        from ocibuild.executor.cache import StepCache

        # --no-cache: every step runs again; what it makes is still recorded for later builds.
        clamp = layer_epoch(outputs, epoch, options.rewrite_timestamp)
        cache = StepCache(store, read=not options.no_cache, source_date_epoch=epoch,
                          layer_epoch=clamp)
        services = BuildServices(
            store=store, runtime=runtime, progress=progress, images=images.image,
            context_dir=context.root, context=context,
            source_date_epoch=clamp, epoch=epoch,
            created=now_rfc3339(epoch), run_mounts=mounts, cache=cache,
            run_settings=run_settings,
        )
        services.output_compression = output_compression(outputs)
        push_target = streamed_push_target(outputs)
        if push_target is not None:
            from ocibuild.registry.streamed import StreamedUploads

            uploads = services.uploads = StreamedUploads(lambda: images.client, push_target)
        runner = StageRunner(services, plan, local_dir=images.local_dir)
        _run_stages(runner, plan)
        image = _finish(runner.results[plan.target].image, options.labels, plan.platform)
        # The push below skips the blobs a stream completed (and shows them as sent). Waited
        # for first: the store's writer thread syncs the last layers meanwhile.
        streamed = uploads.settle() if uploads is not None else {}
        store.flush()  # every layer this build committed is in the store (or its error raised)
        written, metadata, manifest_digest = write_outputs(outputs, image, store, images,
                                                           options, progress, streamed,
                                                           layer_dir=services.layer_dir)
        _record_roots(store, image, options)
        result = BuildResult(
            image=image,
            manifest_digest=manifest_digest,
            # the exporter completes the config (history times), so its digest is the id
            config_digest=Digest.parse(metadata.get("containerimage.config.digest",
                                                    str(image.config.digest))),
            stages=tuple(s.index for s in plan.stages),
            outputs=tuple(written),
            warnings=tuple(warnings),
            metadata=metadata,
        )
        if options.metadata_file or options.iidfile:
            from ocibuild.output.export import write_metadata

            write_metadata(options, result)
        return result
    finally:
        if uploads is not None:
            uploads.close()
        if runner is not None:
            runner.close()
        progress.close()
        if mounts is not None:
            mounts.close()
        if runtime is None and detecting is not None and detecting.exception() is None:
            runtime = detecting.result()  # the build failed before it was used
        if runtime is not None:
            runtime.close()
        images.close()
        stack.close()
        if cache is not None:
            cache.close()
        store.close()  # its shared lock: ``prune --all`` may run once no build holds it


def _run_stages(runner: StageRunner, plan: BuildPlan) -> None:
    """Every stage at once, each in a thread; a step that needs another stage waits for it
    (``StageRunner.ready`` for its files, ``result`` for its image). Raises the first failure in plan order, not counting the
    stages a failure stopped."""
    if len(plan.stages) == 1:
        runner.run_stage(plan.stages[0])
        return
    if any(isinstance(step, CopyStep) for st in plan.stages for step in st.steps):
        # Imported here, not by the first COPY: a thread importing while another forks a
        # sandbox could leave the child waiting on the module's import lock.
        import ocibuild.executor.copy  # noqa: F401
    with ThreadPoolExecutor(max_workers=len(plan.stages), thread_name_prefix="stage") as pool:
        futures = [pool.submit(runner.run_stage, s) for s in plan.stages]
    failed = [f for f in futures if f.exception() is not None]
    for f in sorted(failed, key=lambda f: isinstance(f.exception(), StageStopped)):
        f.result()


def build_root(options: BuildOptions) -> str:
    """The gc root name of a build's result: one per context, Dockerfile, target and platform,
    so rebuilding replaces it (the previous result's layers can then go)."""
    context = options.context if "://" in options.context else str(Path(options.context).resolve())
    return (f"build:{context}:{options.dockerfile or 'Dockerfile'}:{options.target or ''}:"
            f"{options.platform or ''}")


def _record_roots(store: Any, image: Image, options: BuildOptions) -> None:
    """Keep the built image in the store under its build and under each ``--tag``."""
    from ocibuild.store.images import record_image

    for name in (build_root(options), *(f"tag:{t}" for t in options.tags)):
        record_image(store, name, image)


def _finish(image: Image, labels: Mapping[str, str], platform: str) -> Image:
    """``--label`` values land on the final image's config (as buildx does), and the target
    platform is its platform, whatever its base's was: BuildKit writes ``--platform
    linux/arm64`` (or the host's default) even over a base that names amd64, and a variant
    the target names. A base's variant stays under a target without one on the same
    architecture."""
    data = image.config.to_json()
    target = parse_platform(platform)
    variant = target.variant or (data.get("variant", "") if data.get("architecture") ==
                                 target.architecture else "")
    if (data.get("os"), data.get("architecture"), data.get("variant", "")) != (
            target.os, target.architecture, variant):
        data["os"], data["architecture"] = target.os, target.architecture
        if variant:
            data["variant"] = variant
        else:
            data.pop("variant", None)
        image = image.with_config(ImageConfig(data))
    if not labels:
        return image
    inner = data.setdefault("config", {})
    merged = dict(inner.get("Labels") or {})
    merged.update(labels)
    inner["Labels"] = merged
    return image.with_config(ImageConfig(data))


def _client(options: BuildOptions, outputs: Sequence[Any]) -> Any:
    """The registry client; ``outputs`` (parsed ``OutputSpec``s) with ``registry.insecure``
    add the registries they push to to ``--insecure-registry``'s."""
    from ocibuild.reference import Reference
    from ocibuild.registry.client import RegistryClient

    hosts = list(options.insecure_registries)
    for out in outputs:
        if out.insecure:
            hosts += [Reference.parse(name).registry for name in out.names]
    return RegistryClient.from_environment(insecure_hosts=hosts)


def _secrets(specs: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """``--secret id=ID,src=PATH|env=VAR`` -> {id: ("file"|"env", value)} (read at RUN time,
    never stored)."""
    out: dict[str, tuple[str, str]] = {}
    for spec in specs:
        fields = dict(f.partition("=")[::2] for f in spec.split(",") if f)
        ident = fields.get("id")
        src = fields.get("src") or fields.get("source")
        env = fields.get("env")
        if src is None and env is None and ident:
            env, src = (ident, None) if ident in os.environ else (None, None)
        if not ident:
            ident = Path(src).name if src else env or ""
        if not ident or (src is None and env is None):
            raise UsageError(f"invalid --secret {spec!r}: want id=ID,src=PATH or id=ID,env=VAR")
        if src is not None and not Path(src).is_file():
            raise UsageError(f"--secret {ident}: {src} is not a file")
        out[ident] = ("file", str(Path(src).resolve())) if src is not None else ("env", env or "")
    return out


def _ssh(specs: tuple[str, ...]) -> dict[str, str]:
    """``--ssh default|ID[=SOCKET]`` -> {id: socket path}; ``default`` is $SSH_AUTH_SOCK."""
    out: dict[str, str] = {}
    for spec in specs:
        ident, sep, sock = spec.partition("=")
        if not sep:
            sock = os.environ.get("SSH_AUTH_SOCK", "")
            if not sock:
                raise UsageError(f"--ssh {ident}: SSH_AUTH_SOCK is not set")
        out[ident or "default"] = sock
    return out
