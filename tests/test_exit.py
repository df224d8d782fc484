"""``python -m ocibuild`` ends without the interpreter's teardown (``cli.exit_process``): what
it printed still arrives whole, its exit handlers still run, its threads are waited for."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

from ocibuild import cli

ROOT = Path(__file__).parents[1]


def test_everything_printed_arrives_and_the_code_is_kept(tmp_path: Path) -> None:
    """4,000 findings (~400 KB, more than a pipe holds) through a block-buffered stdout: the
    same text as the check prints in-process."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\n" + "CMD run\n" * 2000)
    done = subprocess.run([sys.executable, "-m", "ocibuild", "--check", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    expected = io.StringIO()
    with contextlib.redirect_stdout(expected):
        assert cli.main(["--check", str(tmp_path)]) == 0
    assert len(expected.getvalue()) > 300_000
    assert done.stdout == expected.getvalue()
    (tmp_path / "Dockerfile").write_text("# check=error=true\nFROM scratch\nCMD run\n")
    done = subprocess.run([sys.executable, "-m", "ocibuild", "--check", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 1 and "lint violation" in done.stderr


def test_exit_handlers_run_and_threads_are_waited_for() -> None:
    code = """
import atexit, sys, threading, time
from ocibuild.cli import exit_process
atexit.register(lambda: print("handler", flush=False))
def late():
    time.sleep(0.3)
    print("thread", flush=False)
threading.Thread(target=late).start()
sys.stderr.write("unflushed")
exit_process(3)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 3
    assert done.stdout == "thread\nhandler\n"
    assert done.stderr == "unflushed"
