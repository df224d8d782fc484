"""Progress writers: BuildKit's plain shapes, the tty view, quiet."""

from __future__ import annotations

import io
import re
import threading

import pytest

from ocibuild.executor.progress import PlainProgress, TtyProgress, make_progress


def test_plain_numbers_steps_prints_output_and_done() -> None:
    out = io.StringIO()
    p = make_progress("plain", out)
    with p.step("[build 2/4] RUN make") as v:
        v.log(b"gcc -c main.c\nlinking")
    v2 = p.vertex("[build 3/4] COPY a /b")
    v2.cached()
    p.close()
    text = out.getvalue()
    assert re.fullmatch(
        r"#1 \[build 2/4\] RUN make\n#1 \d\.\d{3} gcc -c main\.c\n#1 \d\.\d{3} linking\n"
        r"#1 DONE \d+\.\ds\n\n#2 \[build 3/4\] COPY a /b\n#2 CACHED\n", text), text


def test_plain_repeats_the_header_when_vertices_interleave() -> None:
    out = io.StringIO()
    p = PlainProgress(out)
    a, b = p.vertex("[a 2/2] RUN x"), p.vertex("[b 2/2] RUN y")
    a.log(b"from a\n")
    b.error("boom")
    lines = out.getvalue().splitlines()
    assert lines[:5] == ["#1 [a 2/2] RUN x", "", "#2 [b 2/2] RUN y", "", "#1 [a 2/2] RUN x"]
    assert lines[-1] == "#2 ERROR: boom" and "#2 [b 2/2] RUN y" in lines[-3:]


def test_step_marks_error_and_reraises() -> None:
    out = io.StringIO()
    p = PlainProgress(out)
    with pytest.raises(ValueError), p.step("[1/1] RUN false"):
        raise ValueError("exit code: 1")
    assert out.getvalue().endswith("#1 ERROR: exit code: 1\n")


def test_transfers_print_start_and_end_in_plain_mode() -> None:
    out = io.StringIO()
    v = PlainProgress(out).vertex("[internal] pull busybox")
    for n in (0, 500, 1000):
        v.status("sha256:abc", n, 1000)
    assert out.getvalue().splitlines()[1:] == ["#1 sha256:abc 0B / 1.00kB",
                                               "#1 sha256:abc 1.00kB / 1.00kB done"]


def test_tty_draws_in_place_with_bars_and_is_thread_safe() -> None:
    out = io.StringIO()
    p = TtyProgress(out)
    vs = [p.vertex(f"[s{i} 1/1] RUN x") for i in range(4)]

    def work(i: int) -> None:
        for n in range(50):
            vs[i].status("layer", n, 49)
            vs[i].log(b"line\n")
        vs[i].done()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    p.close()
    text = out.getvalue()
    assert "\x1b[" in text and "[+] Finished" in text and "(4/4)" in text


def test_quiet_prints_nothing_and_auto_picks_plain_off_a_terminal() -> None:
    out = io.StringIO()
    p = make_progress("quiet", out)
    p.vertex("x").done()
    assert out.getvalue() == ""
    assert isinstance(make_progress("auto", io.StringIO()), PlainProgress)


def test_plain_transfer_lines_are_buildkit_shaped() -> None:
    """``#N <digest> <done> / <total> <secs>s done``: start, throttled middle, end."""
    out = io.StringIO()
    v = PlainProgress(out).vertex("[internal] pull busybox")
    ident = "sha256:" + "ab" * 32
    v.status(ident, 0, 10_500_000)
    for n in range(1, 100):  # 1% steps arriving at once: throttled away
        v.status(ident, n * 105_000, 10_500_000)
    v.transfer_started[ident] -= 0.3  # as if the download took 0.3 s
    v.status(ident, 10_500_000, 10_500_000)
    lines = out.getvalue().splitlines()[1:]
    assert lines[0] == f"#1 {ident} 0B / 10.50MB"
    assert re.fullmatch(rf"#1 {ident} 10\.50MB / 10\.50MB 0\.3s done", lines[-1]), lines
    assert len(lines) == 2, lines


@pytest.mark.parametrize("mode", ["plain", "tty", "quiet"])
def test_warnings_print_once_when_closed(mode: str) -> None:
    out = io.StringIO()
    p = make_progress(mode, out)
    for _ in range(3):
        p.warn("single id: chown is not kept")
    p.vertex("[1/1] RUN x").done()
    assert "WARNING" not in out.getvalue()
    p.close()
    assert out.getvalue().count("WARNING: single id: chown is not kept\n") == 1
