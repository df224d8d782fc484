"""Build progress on stderr, in BuildKit's shapes.

- ``plain``: numbered vertices, as ``docker buildx build --progress plain`` prints them::

      #5 [build 2/4] RUN make
      #5 0.123 gcc -c main.c
      #5 DONE 1.2s

  A vertex's header is printed again when another vertex printed in between (parallel stages).
- ``tty``: a live view redrawn in place (``[+] Building 3.2s (5/8)``, one line per vertex,
  transfer bars for pulls and pushes); output lines of the running steps are shown beneath.
- ``quiet``: nothing (the caller prints the image digest at the end).

Warnings (``Progress.warn``, e.g. the rootless single-id limitation) are printed once each, as
``WARNING: ...`` lines when the progress closes, in every mode.
- ``auto``: ``tty`` when the stream is a terminal, ``plain`` otherwise.

Every method is thread safe: parallel stages report into one ``Progress``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


def make_progress(mode: str = "auto", stream: TextIO | None = None) -> Progress:
    """The progress writer for a ``--progress`` value."""
    out = stream if stream is not None else sys.stderr
    if mode == "auto":
        mode = "tty" if hasattr(out, "isatty") and out.isatty() else "plain"
    if mode == "plain":
        return PlainProgress(out)
    if mode == "tty":
        return TtyProgress(out)
    return Progress(out)


class Vertex:
    """One step shown to the user. Created by ``Progress.vertex``; ends with exactly one of
    ``done``, ``cached`` or ``error`` (later calls are ignored)."""

    def __init__(self, progress: Progress, number: int, name: str):
        self.progress = progress
        self.number = number
        self.name = name
        self.started = time.monotonic()
        self.ended: float | None = None
        self.state = "running"  # running | done | cached | error
        self.transfers: dict[str, tuple[int, int | None]] = {}
        self.transfer_started: dict[str, float] = {}
        self.transfer_ended: dict[str, float] = {}
        self._partial = b""

    @property
    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def log(self, data: bytes) -> None:
        """Output of the step (stdout and stderr of a RUN); split into lines here."""
        with self.progress.lock:
            buf = self._partial + data
            *lines, self._partial = buf.split(b"\n")
            for line in lines:
                self.progress._line(self, line.decode("utf-8", "replace").rstrip("\r"))

    def status(self, ident: str, current: int, total: int | None = None) -> None:
        """A transfer's progress (bytes); ``current == total`` marks it finished."""
        with self.progress.lock:
            first = ident not in self.transfers
            if first:
                self.transfer_started[ident] = time.monotonic()
            if total is not None and current >= total:
                self.transfer_ended.setdefault(ident, time.monotonic())
            self.transfers[ident] = (current, total)
            self.progress._transfer(self, ident, current, total, first)

    def _end(self, state: str, message: str = "") -> None:
        with self.progress.lock:
            if self.state != "running":
                return
            if self._partial:
                self.progress._line(self, self._partial.decode("utf-8", "replace"))
                self._partial = b""
            self.ended = time.monotonic()
            self.state = state
            self.progress._end(self, message)

    def done(self) -> None:
        self._end("done")

    def cached(self) -> None:
        self._end("cached")

    def error(self, message: str) -> None:
        self._end("error", message)


class Progress:
    """The quiet writer, and the base of the others: tracks vertices, prints nothing."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.lock = threading.RLock()
        self.vertices: list[Vertex] = []
        self.warnings: list[str] = []
        self.started = time.monotonic()

    def vertex(self, name: str) -> Vertex:
        """Start a new vertex named ``name`` (e.g. ``[build 2/4] RUN make``)."""
        with self.lock:
            v = Vertex(self, len(self.vertices) + 1, name)
            self.vertices.append(v)
            self._start(v)
            return v

    @contextmanager
    def step(self, name: str) -> Iterator[Vertex]:
        """A vertex that is ``done`` when the block ends and ``error`` when it raises."""
        v = self.vertex(name)
        try:
            yield v
        except BaseException as exc:
            v.error(str(exc) or type(exc).__name__)
            raise
        v.done()

    def warn(self, message: str) -> None:
        """Show ``message`` to the user once (repeats are dropped), when the progress closes."""
        with self.lock:
            if message not in self.warnings:
                self.warnings.append(message)

    def close(self) -> None:
        """Flush; the live view draws its final state; then the warnings, one line each."""
        with self.lock:
            for message in self.warnings:
                self.stream.write(f"WARNING: {message}\n")
            if self.warnings:
                self.stream.flush()

    # hooks for subclasses, called with the lock held
    def _start(self, v: Vertex) -> None:
        pass

    def _line(self, v: Vertex, line: str) -> None:
        pass

    def _transfer(self, v: Vertex, ident: str, current: int, total: int | None, first: bool) -> None:
        pass

    def _end(self, v: Vertex, message: str) -> None:
        pass


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.2f}{unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n}B"


class PlainProgress(Progress):
    #: BuildKit's plain printer shows a running transfer again after 5% more or 5 s.
    MIN_FRACTION = 0.05
    MIN_SECONDS = 5.0

    def __init__(self, stream: TextIO):
        super().__init__(stream)
        self._last: Vertex | None = None
        self._shown: dict[tuple[int, str], tuple[float, int]] = {}  # -> (time, bytes)

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def _header(self, v: Vertex) -> None:
        if self._last is not v:
            self._write(f"\n#{v.number} {v.name}\n" if self._last is not None
                        else f"#{v.number} {v.name}\n")
            self._last = v

    def _start(self, v: Vertex) -> None:
        self._header(v)

    def _line(self, v: Vertex, line: str) -> None:
        self._header(v)
        self._write(f"#{v.number} {v.elapsed:.3f} {line}\n")

    def _transfer(self, v: Vertex, ident: str, current: int, total: int | None, first: bool) -> None:
        """``#3 sha256:ab.. 1.05MB / 10.49MB 0.2s`` when a transfer starts, again after 5% more
        (at most every 0.2 s) or 5 s, and ``... 10.49MB / 10.49MB 0.3s done`` at its end."""
        finished = total is not None and current >= total
        now = time.monotonic()
        key = (v.number, ident)
        if not (first or finished):
            at, seen = self._shown.get(key, (now, 0))
            fraction = (current - seen) / total if total else 0.0
            if not (now - at >= self.MIN_SECONDS or
                    (fraction >= self.MIN_FRACTION and now - at >= 0.2)):
                return
        self._shown[key] = (now, current)
        self._header(v)
        amount = f" {_size(current)} / {_size(total)}" if total else (
            f" {_size(current)}" if current else "")
        took = now - v.transfer_started.get(ident, now)
        tm = f" {took:.1f}s" if took > 0.01 else ""
        self._write(f"#{v.number} {ident}{amount}{tm}{' done' if finished else ''}\n")

    def _end(self, v: Vertex, message: str) -> None:
        self._header(v)
        if v.state == "cached":
            self._write(f"#{v.number} CACHED\n")
        elif v.state == "error":
            self._write(f"#{v.number} ERROR: {message}\n")
        else:
            self._write(f"#{v.number} DONE {v.elapsed:.1f}s\n")


class TtyProgress(Progress):
    """The live view: redraws the whole block at most every 100 ms (and when closed)."""

    TAIL = 6  # output lines shown under each running step

    def __init__(self, stream: TextIO):
        super().__init__(stream)
        self._drawn = 0
        self._tails: dict[int, list[str]] = {}
        self._next_draw = 0.0
        self._closed = False
        self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._closed:
            time.sleep(0.1)
            with self.lock:
                if not self._closed:
                    self._draw()

    def _start(self, v: Vertex) -> None:
        self._maybe_draw()

    def _line(self, v: Vertex, line: str) -> None:
        tail = self._tails.setdefault(v.number, [])
        tail.append(line)
        del tail[: -self.TAIL]
        self._maybe_draw()

    def _transfer(self, v: Vertex, ident: str, current: int, total: int | None, first: bool) -> None:
        self._maybe_draw()

    def _end(self, v: Vertex, message: str) -> None:
        if v.state == "error":
            self._tails.setdefault(v.number, []).append(f"ERROR: {message}")
        self._draw()

    def _maybe_draw(self) -> None:
        now = time.monotonic()
        if now >= self._next_draw:
            self._draw()

    def _width(self) -> int:
        import shutil

        return max(40, shutil.get_terminal_size((100, 24)).columns)

    def _render(self) -> list[str]:
        width = self._width()
        total = len(self.vertices)
        finished = sum(1 for v in self.vertices if v.state != "running")
        state = "Finished" if self._closed else "Building"
        lines = [f"[+] {state} {time.monotonic() - self.started:.1f}s ({finished}/{total})"]
        for v in self.vertices:
            mark = {"cached": "CACHED", "error": "ERROR"}.get(v.state, f"{v.elapsed:.1f}s")
            head = f" => {v.name}"
            lines.append(head[: width - len(mark) - 2].ljust(width - len(mark) - 1) + mark)
            # Transfers stay listed under their step once done, as in BuildKit's view.
            for ident, (cur, tot) in v.transfers.items():
                lines.append(self._transfer_line(v, ident, cur, tot, width))
            if v.state == "running" or v.state == "error":
                lines.extend(f" => => # {t}"[:width] for t in self._tails.get(v.number, []))
        return lines

    @staticmethod
    def _transfer_line(v: Vertex, ident: str, cur: int, tot: int | None, width: int) -> str:
        """`` => => sha256:ab.. [====    ] 1.05MB / 10.49MB      0.2s`` (sizes only when done);
        a long ident is cut so the amounts and the time stay visible."""
        now = time.monotonic()
        ended = v.transfer_ended.get(ident)
        took = f"{(ended or now) - v.transfer_started.get(ident, now):.1f}s"
        amount = (f"{_size(cur)} / {_size(tot)}" if tot else _size(cur)) if ended else \
            _bar(cur, tot)
        room = max(8, width - len(took) - len(amount) - 10)
        text = f" => => {ident[:room]} {amount}"
        return text[: width - len(took) - 2].ljust(width - len(took) - 1) + took

    def _draw(self) -> None:
        lines = self._render()
        out = [f"\x1b[{self._drawn}A"] if self._drawn else []
        out.extend(f"\r\x1b[K{line}\n" for line in lines)
        if len(lines) < self._drawn:
            out.append("\x1b[J")
        self.stream.write("".join(out))
        self.stream.flush()
        self._drawn = len(lines)
        self._next_draw = time.monotonic() + 0.1

    def close(self) -> None:
        with self.lock:
            self._closed = True
            self._draw()
        self._ticker.join(timeout=1)
        super().close()


def _bar(current: int, total: int | None, width: int = 20) -> str:
    if not total:
        return _size(current)
    filled = min(width, int(width * current / total))
    return f"[{'=' * filled}{' ' * (width - filled)}] {_size(current)} / {_size(total)}"
