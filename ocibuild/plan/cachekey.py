"""Per-step cache keys of the local build cache (``executor.cache`` uses them).

A key is the SHA-256 of the parent state's key, a canonical description of the step and the
``content`` the plan cannot know (the executor's part: files a COPY selects, the key of a
``--from`` stage, RUN's environment and bind-mount sources; see ``executor.cache``). The
description is the step's ``repr`` (frozen dataclasses and tuples: deterministic) with what
must not bust the cache blanked: the instruction's location and source text, the history-only
build args, and the proxy build args (BuildKit keeps proxies out of cache keys). Everything
else the step carries stays in, so two steps that mean different things never share a key.
XXX: BuildKit's own LLB digests (for ``--cache-from``/``--cache-to``) are another matter.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from ocibuild.errors import Location
from ocibuild.plan.model import ConfigStep, CopyStep, RunStep, Step
from ocibuild.plan.steps import PROXY_ARGS

_NOWHERE = Location("", 0)
_PROXIES = frozenset(p.lower() for p in PROXY_ARGS)


def _canonical(step: Step) -> str:
    """``repr`` of the step with location-like and proxy fields blanked (reprs of frozen
    dataclasses and tuples are deterministic)."""
    ins = replace(step.instruction, location=_NOWHERE, original="")
    match step:
        case RunStep():
            args = tuple(kv for kv in step.build_args if kv[0].lower() not in _PROXIES)
            return repr(replace(step, instruction=ins, build_args=args, history_args=()))
        case CopyStep() | ConfigStep():
            return repr(replace(step, instruction=ins))


def step_cache_key(parent: str, step: Step, content: str = "") -> str:
    """``sha256:<hex>`` for ``step`` run on top of the state keyed ``parent`` (the base image's
    manifest digest, or the previous step's key). ``content`` must carry what the plan cannot
    know: for COPY/ADD the digest of the copied files, for ``--from`` the source stage's key."""
    digest = hashlib.sha256()
    for part in (parent, _canonical(step), content):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()
