"""The local build cache as the stage loop uses it: step keys from the state they run on, the
lookup of what an earlier build's step produced, and the record of what this one produced.

A state key names a stage's image state (config and layers) exactly:

- the base: ``FROM image`` -> its manifest digest and platform; ``FROM scratch`` -> the
  platform; ``FROM <stage>`` -> that stage's final key. A salt goes in here and so reaches
  every key: the cache format and ocibuild versions and ``SOURCE_DATE_EPOCH`` (it changes
  layer mtimes); not the compression, since layers are cached uncompressed and outputs
  compress them (``output.recompress``);
- every step: ``plan.cachekey.step_cache_key(parent, step, content)`` where ``content`` holds
  what the plan cannot know (``step_content``): the digest of the files a COPY/ADD selects from
  the context (or a ``--build-context`` dir), the key of a ``--from`` stage, the manifest of a
  ``--from`` image; for RUN the environment, user, workdir and shell in effect and the sources
  of its bind mounts. Cache, tmpfs, secret and ssh mounts enter only as their spec (ids, never
  a secret's value).

A step whose content cannot be known before it runs (``ADD`` of a URL without ``--checksum``,
or of a git repository) is never a hit: it runs, and its key is derived from the layer it made,
so the steps after it still hit when it fetched the same bytes.

Values are ``store.buildcache`` entries: a layer (descriptor + diff id) and its history entry,
whose ``created`` is kept from the build that made the layer, as BuildKit keeps a cached
layer's creation time (``buildkit/createdat``). A hit whose blob is gone is a miss.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ocibuild import __version__
from ocibuild.digest import Digest
from ocibuild.errors import OcibuildError
from ocibuild.executor.cache_files import FileDigests, file_digest
from ocibuild.executor.copy_paths import resolve_wildcards
from ocibuild.executor.copy_remote import is_http_source, parse_git_source
from ocibuild.fs.safepath import safe_join
from ocibuild.image import Descriptor, History, Image, Layer, chain_ids
from ocibuild.plan.cachekey import step_cache_key
from ocibuild.plan.model import (
    ContextRef,
    CopyStep,
    ImageRef,
    PlannedStage,
    RunStep,
    Scratch,
    StageRef,
    Step,
)
from ocibuild.store import buildcache

FORMAT = "ocibuild-cache-v2"  # v2: layers uncompressed


@dataclass(frozen=True)
class CacheHit:
    layer: Layer | None
    history: History


class StepCache:
    """Reads (unless ``read`` is off: ``--no-cache``) and writes entries in ``store``.
    Thread safe: stages running side by side share it; entries are files renamed into place."""

    def __init__(self, store: Any, *, read: bool = True, source_date_epoch: int | None = None,
                 layer_epoch: int | None = None):
        self.store = store
        self.read = read
        # The version too: layers written by another ocibuild may differ in bytes.
        self.salt = json.dumps([FORMAT, __version__, source_date_epoch, layer_epoch])
        self._files: dict[Path, FileDigests] = {}
        self._lock = threading.Lock()

    def files(self, root: Path) -> FileDigests:
        """The remembered file digests of a context dir (loaded once per build)."""
        with self._lock:
            if root not in self._files:
                self._files[root] = FileDigests(self.store, root)
            return self._files[root]

    def close(self) -> None:
        """Keep the file digests hashed by this build for the next one (best effort)."""
        with self._lock:
            found = list(self._files.values())
        for files in found:
            with contextlib.suppress(OSError):
                files.save()

    def base_key(self, identity: str) -> str:
        """The state key of a stage's starting point (``identity`` from ``base_identity``);
        a ``FROM <stage>`` starts from that stage's final key instead."""
        digest = hashlib.sha256(f"{self.salt}\0{identity}".encode("utf-8", "surrogatepass"))
        return "sha256:" + digest.hexdigest()

    def lookup(self, key: str) -> CacheHit | None:
        """What a step keyed ``key`` made before, if its layer blob is still in the store."""
        if not self.read:
            return None
        entry = buildcache.read_entry(self.store, key)
        if entry is None:
            return None
        try:
            history = History.from_json(entry.history)
            layer = None
            if entry.layer is not None:
                desc = Descriptor.from_json(entry.layer, "build cache entry")
                layer = Layer(desc, Digest.parse(entry.layer["diffId"]))
                if not self.store.has(desc.digest):  # ``has`` also keeps it from gc's grace
                    return None
        except (OcibuildError, KeyError, TypeError, ValueError):
            return None
        return CacheHit(layer, history)

    def record(self, key: str, before: Image, after: Image) -> None:
        """Remember the layer and history entry ``after`` added on top of ``before``. Steps
        that changed more than that (config steps) are not recorded: they are cheap to redo."""
        if len(after.layers) != len(before.layers) + 1 or not after.config.history:
            return
        layer = after.layers[-1]
        value = dict(layer.descriptor.to_json())
        value["diffId"] = str(layer.diff_id)
        chain = chain_ids(after.config.diff_ids)[-1]
        buildcache.write_entry(self.store, key, value, chain,
                               after.config.history[-1].to_json())


def base_identity(stage: PlannedStage, image: Image | None) -> str:
    """What names a stage's base when it is not another stage."""
    match stage.base:
        case Scratch():
            return f"scratch {stage.platform}"
        case ImageRef(platform=platform):  # by content: a tag and its digest are one base
            return f"image {platform} {image_identity(image)}"
    raise AssertionError(stage.base)


def image_identity(image: Image | None) -> str:
    """An image's manifest digest (or, built from a layout without one, its config digest)."""
    if image is None:
        return "none"
    if image.manifest is not None:
        return str(image.manifest.digest)
    return str(image.config.digest)


def pre_runnable(step: Step) -> bool:
    """False for steps whose inputs are only known once they ran (remote ADD sources)."""
    if not isinstance(step, CopyStep) or not step.add:
        return True
    remote = [s for s in step.sources if is_http_source(s) or parse_git_source(s) is not None]
    if not remote:
        return True
    git = [s for s in remote if not is_http_source(s)]
    return not git and step.checksum is not None


def result_content(after: Image) -> str:
    """The content part of a key derived after the step ran: the layer it made."""
    return "result " + " ".join(str(d) for d in after.config.diff_ids[-1:])


def step_content(runner: Any, step: Step, image: Image) -> str:
    """The content part of ``step``'s key (see the module docstring). ``runner`` is the
    ``StageRunner``: it knows the context, the other stages' keys and the pulled images."""
    s = runner.s
    match step:
        case RunStep():
            inner = image.config.to_json().get("config") or {}
            parts: list[Any] = [
                "run", inner.get("Env") or [], inner.get("User") or "",
                inner.get("WorkingDir") or "", inner.get("Shell") or [],
            ]
            settings = getattr(s, "run_settings", None)
            if settings is not None and not settings.is_default:  # a RUN's meta in BuildKit's key
                parts.append(["settings", settings.network, settings.extra_hosts,
                              settings.shm_size, settings.ulimits])
            for m in step.mounts:
                if m.type == "bind":
                    parts.append(["bind", m.target, _source_content(
                        runner, m.source, [m.source_path or "/"], visible=None)])
            return json.dumps(parts)
        case CopyStep():
            visible = None
            if isinstance(step.source, ContextRef) and s.context is not None and s.context.ignore:
                visible = s.context.visible
            heredocs = {f"<<{d.name}" for d in step.heredocs}  # their text is in the step
            sources = [src for src in step.sources if src not in heredocs and not (
                step.add and (is_http_source(src) or parse_git_source(src) is not None))]
            return json.dumps(["copy", _source_content(runner, step.source, sources, visible)])
    return ""


def _source_content(runner: Any, source: Any, paths: Sequence[str],
                    visible: Callable[[str], bool] | None) -> str:
    match source:
        case ContextRef():
            ctx = runner.s.context
            files = None
            if runner.s.cache is not None and not getattr(ctx, "from_stdin", False):
                files = runner.s.cache.files(runner.s.context_dir)  # a stdin tar is new each time
            return "context " + tree_digest(runner.s.context_dir, paths, visible, files)
        case StageRef(index=index):
            return f"stage {index} {runner.ready(index).key}"
        case ImageRef():
            local = runner._local_dir(source) if runner._local_dir else None
            if local is not None:
                return "dir " + tree_digest(local, paths, None)
            return f"image {source.platform} {image_identity(runner.s.images(source))}"
        case Scratch():
            return "scratch"
    raise AssertionError(source)


def tree_digest(root: Path, sources: Sequence[str], visible: Callable[[str], bool] | None,
                files: FileDigests | None = None) -> str:
    """SHA-256 over what ``sources`` (COPY source patterns) select under ``root``: for every
    match, recursively, each entry's name, type and mode, owner, size, content and symlink
    target. Unreadable or missing sources enter as such (the step itself reports them).
    Modification times are left out, as BuildKit's content checksums leave them out.
    ``files`` remembers file digests across builds by their stat (``cache_files``)."""
    h = hashlib.sha256()
    links: dict[tuple[int, int], str] = {}  # hard-linked files: the first name of each inode
    for src in sources:
        h.update(f"src {src}\0".encode("utf-8", "surrogateescape"))
        try:
            matches = resolve_wildcards(root, src, visible=visible)
        except (OSError, OcibuildError) as exc:
            h.update(f"unresolved {type(exc).__name__}\0".encode())
            continue
        for rel in matches:
            try:
                real = safe_join(root, rel, visible=visible)
            except (OSError, OcibuildError) as exc:
                h.update(f"bad {rel} {type(exc).__name__}\0".encode("utf-8", "surrogateescape"))
                continue
            base = os.path.relpath(real, root)
            _hash_tree(h, str(real), rel, "" if base == "." else base, visible, files, links)
    return h.hexdigest()


def _hash_tree(h: Any, path: str, name: str, rel: str,
               visible: Callable[[str], bool] | None, files: FileDigests | None,
               links: dict[tuple[int, int], str]) -> None:
    try:
        st = os.lstat(path)
    except OSError:
        h.update(f"missing {name}\0".encode("utf-8", "surrogateescape"))
        return
    h.update(f"{name}\0{st.st_mode:o} {st.st_uid} {st.st_gid} {st.st_size}\0"
             .encode("utf-8", "surrogateescape"))
    if stat.S_ISLNK(st.st_mode):
        try:
            h.update(os.fsencode(os.readlink(path)) + b"\0")
        except OSError:
            h.update(b"unreadable link\0")
    elif stat.S_ISREG(st.st_mode):
        if st.st_nlink > 1:  # COPY keeps hard links: which names share an inode matters
            h.update(f"link {links.setdefault((st.st_dev, st.st_ino), name)}\0"
                     .encode("utf-8", "surrogateescape"))
        value = files.digest(path, st) if files is not None else file_digest(path)
        h.update(value.encode() + b"\0")
    elif stat.S_ISDIR(st.st_mode):
        try:
            names = sorted(os.listdir(path))
        except OSError:
            h.update(b"unlistable\0")
            return
        for child in names:
            child_rel = f"{rel}/{child}" if rel else child
            if visible is not None and not visible(child_rel):
                continue
            _hash_tree(h, os.path.join(path, child), f"{name.rstrip('/')}/{child}", child_rel,
                       visible, files, links)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        h.update(f"dev {st.st_rdev}\0".encode())


def key_before(runner: Any, parent: str, step: Step, image: Image) -> str | None:
    """``step``'s key on the state ``parent`` (``image``), or None when only its result can
    key it (``key_after``)."""
    if not pre_runnable(step):
        return None
    return step_cache_key(parent, step, step_content(runner, step, image))


def key_after(parent: str, step: Step, after: Image) -> str:
    return step_cache_key(parent, step, result_content(after))


def restamp(image: Image, first_new: int) -> Image:
    """Creation times as BuildKit's exporter derives them from layer times, over the history
    entries this build added (``first_new`` on): an entry without a layer takes the time of
    the layer before it (or, before the first new layer, of that layer), and the config's
    ``created`` is the last of them. A cold build stamps every entry with one time, so this
    only matters once cached layers keep their own: a rebuild all from cache is then the same
    image, byte for byte, as BuildKit's is. Without a new layer, the new entries and the config
    get no time here: BuildKit's exporter gives them the base's last one, or none at all (a
    config-only ``FROM scratch`` image has ``"created": null``), see ``output.export``."""
    history = list(image.config.history)
    layered = [h.created for h in history[first_new:] if not h.empty_layer and h.created]
    if not layered:
        history[first_new:] = [replace(h, created=None) for h in history[first_new:]]
        return image.with_config(image.config.with_history(history).with_created(None))
    created = layered[0]
    for i in range(first_new, len(history)):
        h = history[i]
        if not h.empty_layer and h.created:
            created = h.created
        elif h.empty_layer and h.created != created:
            history[i] = replace(h, created=created)
    config = image.config.with_history(history).with_created(created)
    return image.with_config(config)
