"""The stage graph: which stages a target needs, cycle detection, order and parallel waves.

Pure graph algorithms over stage indexes; iterative (no recursion limit on deep chains).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ocibuild.dockerfile.model import Instruction
from ocibuild.errors import PlanError


@dataclass(frozen=True)
class Edge:
    """Stage ``src`` needs stage ``dst`` because of ``instruction`` (FROM, COPY --from, RUN
    --mount from=, or an ONBUILD trigger); ``what`` names the edge in messages."""

    src: int
    dst: int
    instruction: Instruction
    what: str


def reachable(target: int, edges_of: Callable[[int], Sequence[Edge]]) -> dict[int, list[Edge]]:
    """Every stage reachable from ``target`` (itself included) with its outgoing edges, found by
    calling ``edges_of`` once per reachable stage only: unneeded stages are never looked at."""
    found: dict[int, list[Edge]] = {}
    todo = [target]
    while todo:
        index = todo.pop()
        if index in found:
            continue
        found[index] = list(edges_of(index))
        todo.extend(edge.dst for edge in found[index] if edge.dst not in found)
    return found


def find_cycle(graph: Mapping[int, Sequence[Edge]]) -> list[Edge] | None:
    """One cycle of ``graph`` as its edges in order (starting at the lowest stage on it), or None.

    Kahn's algorithm strips every stage that is not on or behind a cycle; from any remaining
    stage, following remaining edges must revisit a stage, and that loop is the cycle.
    """
    pending = {index: {e.dst for e in edges} for index, edges in graph.items()}
    users: dict[int, set[int]] = {index: set() for index in graph}
    for index, deps in pending.items():
        for dep in deps:
            users.setdefault(dep, set()).add(index)
    ready = [index for index, deps in pending.items() if not deps]
    while ready:
        done = ready.pop()
        for user in users.get(done, ()):
            pending[user].discard(done)
            if not pending[user]:
                ready.append(user)
        pending.pop(done, None)
    left = {index for index, deps in pending.items() if deps}
    if not left:
        return None
    # Walk from the smallest remaining stage until a stage repeats.
    path: list[Edge] = []
    seen: dict[int, int] = {}
    node = min(left)
    while node not in seen:
        seen[node] = len(path)
        edge = min(
            (e for e in graph[node] if e.dst in left),
            key=lambda e: (e.dst, e.instruction.location.line),
        )
        path.append(edge)
        node = edge.dst
    cycle = path[seen[node]:]
    start = min(range(len(cycle)), key=lambda i: cycle[i].src)
    return cycle[start:] + cycle[:start]


def cycle_error(cycle: Sequence[Edge], stage_name: Callable[[int], str]) -> PlanError:
    """BuildKit's ``circular dependency detected on stage: NAME``, naming every edge's line."""
    edges = " -> ".join(f"{e.instruction.location} {e.what}" for e in cycle)
    return PlanError(
        f"circular dependency detected on stage: {stage_name(cycle[0].src)} ({edges})",
        location=cycle[0].instruction.location,
        hint="a stage cannot use itself, directly or through other stages",
    )


def waves(order: Sequence[int], graph: Mapping[int, Sequence[Edge]]) -> tuple[tuple[int, ...], ...]:
    """Group ``order`` (a topological order) into waves: a stage's wave is one more than the
    latest wave among its dependencies, so every stage of a wave can run in parallel."""
    level: dict[int, int] = {}
    for index in order:
        level[index] = 1 + max((level[e.dst] for e in graph[index]), default=-1)
    count = 1 + max(level.values(), default=-1)
    return tuple(tuple(i for i in order if level[i] == n) for n in range(count))
