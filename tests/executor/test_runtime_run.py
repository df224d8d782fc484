"""RUN in the sandbox, in every isolation x snapshotter pair this process can use."""

from __future__ import annotations

import os
import shutil
import tarfile
import time
from pathlib import Path

import pytest

from ocibuild.errors import ExecutionError, SandboxError
from ocibuild.executor.runtime import RunSpec, Runtime, Snapshot
from ocibuild.testing.sandbox import BUSYBOX

pytestmark = [pytest.mark.rootless, pytest.mark.chroot, pytest.mark.timeout(60)]


def run(runtime: Runtime, snap: Snapshot, script: str, **kwargs: object) -> tuple[int, str]:
    chunks: list[bytes] = []
    code = runtime.run(snap, RunSpec(("/bin/sh", "-c", script), **kwargs),  # type: ignore[arg-type]
                       chunks.append)
    return code, b"".join(chunks).decode()


def layer_entries(runtime: Runtime, snap: Snapshot, tmp_path: Path) -> dict[str, tarfile.TarInfo]:
    blob = runtime.commit(snap, tmp_path / "layer.tar.gz")
    with tarfile.open(blob.path) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_exit_codes_and_signals(sandbox_runtime: Runtime, snap: Snapshot) -> None:
    assert run(sandbox_runtime, snap, "exit 0")[0] == 0
    assert run(sandbox_runtime, snap, "exit 3")[0] == 3
    assert run(sandbox_runtime, snap, "sh -c 'kill -9 $$'; exit $?")[0] == 128 + 9
    code, out = run(sandbox_runtime, snap, "exec /no/such/program")
    assert code == 127 and "no/such/program" in out


def test_the_command_is_pid_1_of_its_namespace(sandbox_runtime: Runtime, snap: Snapshot) -> None:
    """As in BuildKit (runc runs the command as the container's init): ``$$`` is 1, nothing of
    ocibuild shows in ps or /proc/1, and pid 1 ignores a SIGKILL sent from inside."""
    if not sandbox_runtime.isolation.namespaced:
        pytest.skip("chroot mode: no pid namespace")
    code, out = run(sandbox_runtime, snap, "echo $$ $PPID; ps -o pid,comm > /tmp/ps; "
                    "tail -n +2 /tmp/ps; tr '\\0' ' ' < /proc/1/cmdline; echo; "
                    "kill -9 $$; echo alive")
    lines = out.splitlines()
    assert code == 0 and lines[0] == "1 0"
    assert [line.split() for line in lines[1:3]] == [["1", "sh"], ["2", "ps"]]
    assert lines[3].startswith("/bin/sh -c echo $$ $PPID;") and lines[4:] == ["alive"]


def test_what_a_run_leaves_running_ends_with_it(sandbox_runtime: Runtime,
                                                 snap: Snapshot) -> None:
    """As in BuildKit, a background process does not outlive its RUN: in namespaces the kernel
    ends it with the command (pid 1), in chroot mode stage 1 kills it."""
    code, _ = run(sandbox_runtime, snap, "sleep 4321 </dev/null >/dev/null 2>&1 & exit 0")
    assert code == 0

    def sleeping() -> list[str]:
        found = []
        for entry in os.scandir("/proc"):
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    if f.read() == b"sleep\x004321\x00":
                        found.append(entry.name)
            except OSError:
                continue
        return found

    assert sleeping() == []


def test_stdin_is_an_empty_pipe(sandbox_runtime: Runtime, snap: Snapshot) -> None:
    """BuildKit's RUN reads stdin from a pipe at its end: scripts that test ``-p /dev/stdin``
    take the piped branch and read nothing."""
    code, out = run(sandbox_runtime, snap,
                    "[ -p /dev/stdin ] && echo fifo; cat | wc -c; [ -t 0 ] || echo no-tty")
    # (chroot mode has no /proc, through which /dev/stdin leads)
    fifo = ["fifo"] if sandbox_runtime.isolation.namespaced else []
    assert code == 0 and out.split() == [*fifo, "0", "no-tty"]


def test_the_umask_is_buildkits_whatever_the_callers(sandbox_runtime: Runtime,
                                                     snap: Snapshot) -> None:
    """runc starts a RUN with umask 0022: files and directories a command makes get 0644 and
    0755 even when ocibuild itself runs under a user's umask 0002 or 0077."""
    old = os.umask(0o077)
    try:
        code, out = run(sandbox_runtime, snap,
                        "umask; mkdir /d && : > /f && stat -c '%n %a' /d /f")
    finally:
        os.umask(old)
    assert code == 0 and out.split("\n")[:3] == ["0022", "/d 755", "/f 644"], out


def test_output_is_streamed_while_running(sandbox_runtime: Runtime, snap: Snapshot) -> None:
    seen: list[tuple[float, bytes]] = []
    sandbox_runtime.run(snap, RunSpec(("/bin/sh", "-c", "echo first; sleep 0.5; echo second >&2")),
                        lambda b: seen.append((time.monotonic(), b)))
    text = b"".join(b for _, b in seen)
    assert text == b"first\nsecond\n"
    first = next(t for t, b in seen if b"first" in b)
    second = next(t for t, b in seen if b"second" in b)
    assert second - first >= 0.4  # "first" arrived before the command ended


def test_user_and_groups_from_the_rootfs(sandbox_runtime: Runtime, snap: Snapshot) -> None:
    code, out = run(sandbox_runtime, snap, "id -u; id -g; id -G", user="bob")
    assert code == 0, out
    uid, gid, groups = out.split("\n")[:3]
    assert (uid, gid) == ("1000", "1000")
    if sandbox_runtime.isolation.single_id:
        assert groups.split() == ["1000"]  # setgroups is impossible with one id
    else:
        assert sorted(groups.split()) == ["10", "1000"]
    assert run(sandbox_runtime, snap, "id -u")[1] == "0\n"
    with pytest.raises(ExecutionError, match="nobody"):
        run(sandbox_runtime, snap, "id", user="nobody")


def test_missing_workdir_is_created_for_the_user(sandbox_runtime: Runtime, snap: Snapshot,
                                                  tmp_path: Path) -> None:
    code, out = run(sandbox_runtime, snap, "pwd; touch made", cwd="/srv/app", user="bob")
    assert (code, out) == (0, "/srv/app\n")
    entries = layer_entries(sandbox_runtime, snap, tmp_path)
    for name in ("srv", "srv/app"):
        assert (entries[name].uid, entries[name].gid) == (1000, 1000)
    assert entries["srv/app/made"].isfile()


def test_environment_and_default_path(sandbox_runtime: Runtime, snap: Snapshot) -> None:
    code, out = run(sandbox_runtime, snap, 'echo "$PATH|$GREETING"', env=("GREETING=hi there",))
    assert out == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin|hi there\n"
    code, out = run(sandbox_runtime, snap, 'echo "$PATH"', env=("PATH=/bin",))
    assert out == "/bin\n"


def test_home_comes_from_the_users_passwd_entry(sandbox_runtime: Runtime,
                                                snap: Snapshot) -> None:
    """As runc: a missing or empty HOME is the passwd home of the RUN's uid, "/" without an
    entry; a HOME in the env wins."""
    for user, env, home in (("", (), "/root"), ("bob", (), "/home/bob"),
                            ("1000:1000", (), "/home/bob"), ("4242", (), "/"),
                            ("", ("HOME=",), "/root"), ("bob", ("HOME=/srv",), "/srv")):
        code, out = run(sandbox_runtime, snap, 'echo "$HOME"; env | grep -c "^HOME="',
                        user=user, env=env)
        assert (code, out) == (0, f"{home}\n1\n"), (user, env)


def test_network_none_has_only_loopback(sandbox_runtime: Runtime, snap: Snapshot) -> None:
    if not sandbox_runtime.isolation.namespaced:
        with pytest.raises(SandboxError, match="network namespace"):
            run(sandbox_runtime, snap, "true", network="none")
        return
    code, out = run(sandbox_runtime, snap, "cat /proc/net/dev", network="none")
    names = sorted(line.split(":")[0].strip() for line in out.splitlines()[2:])
    assert (code, names) == (0, ["lo"])
    code, out = run(sandbox_runtime, snap, "cat /sys/class/net/lo/operstate 2>/dev/null; "
                    "grep -c lo /proc/net/dev", network="none")
    assert code == 0


def test_hosts_resolv_hostname_and_stubs_leave_no_trace(sandbox_runtime: Runtime,
                                                        snap: Snapshot, tmp_path: Path) -> None:
    code, out = run(sandbox_runtime, snap,
                    "cat /etc/hosts; test -e /etc/resolv.conf && echo resolv; "
                    "test -c /dev/null && echo devnull; echo x > /dev/null",
                    extra_hosts=(("db.local", "10.1.2.3"),))
    assert code == 0, out
    assert "127.0.0.1\tlocalhost buildkitsandbox" in out and "resolv" in out
    assert "10.1.2.3\tdb.local" in out
    assert "devnull" in out
    if sandbox_runtime.isolation.namespaced:
        assert run(sandbox_runtime, snap, "hostname")[1] == "buildkitsandbox\n"
        assert run(sandbox_runtime, snap, "test -r /proc/self/status && echo proc")[1] == "proc\n"
        code, out = run(sandbox_runtime, snap, "test -d /sys/class && ! touch /sys/x 2>/dev/null")
        assert code == 0, out
    # Nothing of /etc/hosts or /etc/resolv.conf (absent from the image) or of the device nodes
    # remains: no empty stub, no whiteout. /etc is in the layer, as in BuildKit's: its mount-stub
    # cleaner leaves a stub's parent with the time the stub gave it.
    assert _unchanged(snap, layer_entries(sandbox_runtime, snap, tmp_path))


def _unchanged(snap: Snapshot, entries: dict[str, tarfile.TarInfo]) -> bool:
    """Whether ``entries`` are the layer of a RUN that changed nothing, on an image with /etc
    but no /etc/hosts: /etc alone (its new mtime), but nothing from the copy snapshotter, whose
    double walk does not count a directory's mtime as a change (``fs.diff``)."""
    if snap.kind == "copy":
        return entries == {}
    return set(entries) == {"etc"} and entries["etc"].isdir() and entries["etc"].mode == 0o755


def test_missing_mount_points_stay_like_runc_leaves_them(sandbox_runtime: Runtime,
                                                          tmp_path: Path) -> None:
    """On an image without /proc, /dev and /sys, a RUN leaves them as plain 0755 root
    directories, as runc does under BuildKit (its stub cleaner does not know them)."""
    lower = tmp_path / "lower"
    (lower / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, lower / "bin" / "sh")
    snap = sandbox_runtime.new_snapshot([lower])
    try:
        assert run(sandbox_runtime, snap, "true")[0] == 0
        entries = layer_entries(sandbox_runtime, snap, tmp_path)
    finally:
        sandbox_runtime.remove(snap)
    assert set(entries) == {"dev", "proc", "sys"}, sorted(entries)
    for name in ("dev", "proc", "sys"):
        assert entries[name].isdir() and entries[name].mode == 0o755
        assert (entries[name].uid, entries[name].gid) == (0, 0)


def test_changes_are_what_the_run_did(sandbox_runtime: Runtime, snap: Snapshot,
                                      tmp_path: Path) -> None:
    code, out = run(sandbox_runtime, snap, "echo new > /data/new; rm /data/delete-me; "
                    "echo changed > /data/modify-me; echo hi >> /etc/passwd")
    assert code == 0, out
    entries = layer_entries(sandbox_runtime, snap, tmp_path)
    assert set(entries) == {"data", "data/new", "data/.wh.delete-me", "data/modify-me", "etc",
                            "etc/passwd"}


def test_ownership_calls_succeed(sandbox_runtime: Runtime, snap: Snapshot,
                                 tmp_path: Path) -> None:
    code, out = run(sandbox_runtime, snap,
                    "touch /owned && chown 123:456 /owned && mkfifo /fifo && echo ok")
    assert (code, out) == (0, "ok\n")
    code, out = run(sandbox_runtime, snap, "mknod /dev-node c 1 3")
    # Device nodes: real as root, faked with one id, refused by the kernel in a user namespace
    # with a full id map (as with podman and BuildKit rootless).
    assert code == (1 if sandbox_runtime.isolation.owns_files
                    and sandbox_runtime.isolation.mode == "rootless" else 0), out
    entries = layer_entries(sandbox_runtime, snap, tmp_path)
    assert entries["fifo"].isfifo()
    if sandbox_runtime.isolation.single_id:
        # Faked by the seccomp filter: the RUN goes on, the change is not kept, we warn.
        assert (entries["owned"].uid, entries["owned"].gid) == (0, 0)
        assert any("ownership changes" in w for w in sandbox_runtime.warnings)
    else:
        assert (entries["owned"].uid, entries["owned"].gid) == (123, 456)
        if sandbox_runtime.isolation.mode != "rootless":
            assert entries["dev-node"].ischr() and entries["dev-node"].devmajor == 1


def test_require_run_names_what_is_missing() -> None:
    from ocibuild.executor.detect import Detected
    from ocibuild.executor.sandbox import Isolation

    runtime = Runtime(Detected(Isolation("none"), "copy", False, "user namespaces disabled"),
                      None, Path("/nonexistent"), False, None)
    with pytest.raises(SandboxError, match="user namespaces disabled"):
        runtime.require_run()


def test_files_made_by_the_user_belong_to_the_user(sandbox_runtime: Runtime, snap: Snapshot,
                                                   tmp_path: Path) -> None:
    code, out = run(sandbox_runtime, snap, "mkdir d && echo x > d/f && echo y >> .profile",
                    user="bob", cwd="/home/bob")
    assert code == 0, out
    entries = layer_entries(sandbox_runtime, snap, tmp_path)
    for name in ("home/bob/d", "home/bob/d/f", "home/bob/.profile"):
        assert (entries[name].uid, entries[name].gid) == (1000, 1000), name
    assert entries["home/bob/d/f"].mode == 0o644


def test_run_mounts_are_seen_and_leave_no_trace(sandbox_runtime: Runtime, snap: Snapshot,
                                                tmp_path: Path) -> None:
    from ocibuild.executor.runtime import RunMount

    src = tmp_path / "cache"
    src.mkdir()
    (src / "in").write_text("from host\n")
    os.chmod(tmp_path, 0o755)
    os.chmod(src, 0o777)
    mounts = (RunMount("/mnt/ro", "bind", src, True), RunMount("/var/cache/rw", "bind", src,
                                                                 False),
              RunMount("/scratch", "tmpfs", None, False))
    script = ("cat /mnt/ro/in; (echo x > /mnt/ro/no) 2>/dev/null || echo ro; "
              "echo kept > /var/cache/rw/out; echo t > /scratch/t; echo ok")
    code, out = run(sandbox_runtime, snap, script, mounts=mounts)
    # chroot mode places a copy for a read-only mount: writes succeed there, and are dropped.
    ro = "ro\n" if sandbox_runtime.isolation.namespaced else ""
    assert (code, out) == (0, f"from host\n{ro}ok\n")
    assert (src / "out").read_text() == "kept\n"
    assert not (src / "no").exists()
    # The targets (and /mnt, /var, /var/cache, absent from this image) were stubs, all gone.
    assert _unchanged(snap, layer_entries(sandbox_runtime, snap, tmp_path))


def test_a_mount_over_image_content_leaves_it_be(sandbox_runtime: Runtime, snap: Snapshot,
                                                      tmp_path: Path) -> None:
    """A mount over a directory the image has hides it for the RUN and leaves it as it was
    (contents, times); a cache's writes persist; nothing of the mounts reaches the layer."""
    from ocibuild.executor.runtime import RunMount

    assert run(sandbox_runtime, snap, "mkdir -p /srv/data && echo image > /srv/data/f && "
               "touch -d @1000000000 /srv/data /srv")[0] == 0
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "old").write_text("1\n")
    os.chmod(tmp_path, 0o755)
    os.chmod(cache, 0o777)
    mounts = (RunMount("/srv/data", "bind", cache, False), RunMount("/t", "tmpfs", None, False))
    code, out = run(sandbox_runtime, snap, "ls /srv/data; echo new > /srv/data/new; "
                    "stat -c %a /t; echo x > /t/x", mounts=mounts)
    assert code == 0, out
    assert out == "old\n1777\n"
    assert sorted(p.name for p in cache.iterdir()) == ["new", "old"]
    code, out = run(sandbox_runtime, snap, "cat /srv/data/f; stat -c %Y /srv/data /srv")
    assert (code, out) == (0, "image\n1000000000\n1000000000\n")
    entries = layer_entries(sandbox_runtime, snap, tmp_path)
    assert sorted(entries) == [*(["etc"] if snap.kind != "copy" else []),
                               "srv", "srv/data", "srv/data/f"]
    if snap.kind != "fuse-overlayfs":  # XXX: its copy-up of a mount point takes a new mtime
        assert entries["srv"].mtime == entries["srv/data"].mtime == 1000000000



def test_dev_nodes_are_writable_by_any_user(sandbox_runtime: Runtime, snap: Snapshot,
                                            tmp_path: Path) -> None:
    """/dev/null and friends are 0666 as on a real /dev (chroot mode makes them with mknod,
    where the umask must not apply), so a non-root RUN user can write them; none of them, nor
    /dev itself (absent from the image), reaches the layer."""
    script = ("stat -c '%a %F' /dev/null /dev/zero /dev/full; echo x > /dev/null && "
              "head -c 3 /dev/zero | wc -c && id -u")
    code, out = run(sandbox_runtime, snap, script, user="65534:65534")
    assert code == 0, out
    assert out.splitlines() == ["666 character special file"] * 3 + ["3", "65534"]
    assert _unchanged(snap, layer_entries(sandbox_runtime, snap, tmp_path))


def test_devpts_gives_new_terminals_the_tty_group(sandbox_runtime: Runtime,
                                                 snap: Snapshot) -> None:
    """containerd's spec mounts /dev/pts with gid=5, as BuildKit's RUN has it (with one id,
    group 5 does not exist in the namespace: then without)."""
    if not sandbox_runtime.isolation.namespaced:
        pytest.skip("chroot mode: the host's /dev/pts")
    # Opening /dev/ptmx makes /dev/pts/0, with the mount's gid.
    code, out = run(sandbox_runtime, snap, "exec 3<>/dev/ptmx; stat -c %g /dev/pts/0")
    assert code == 0, out
    assert out.split() == (["0"] if sandbox_runtime.isolation.single_id else ["5"])


def test_apt_is_kept_as_root_only_with_one_id(sandbox_runtime: Runtime, snap: Snapshot,
                                              tmp_path: Path) -> None:
    """With one mapped id apt cannot really drop to _apt (its check of getgid() after the faked
    setgid fails), so RUN points APT_CONFIG at a file outside the snapshot that keeps apt's
    methods as root; every other mode leaves apt alone. Nothing of it reaches the layer."""
    assert run(sandbox_runtime, snap, "mkdir -p /etc/apt")[0] == 0
    code, out = run(sandbox_runtime, snap, 'echo "[$APT_CONFIG]"; '
                    '[ -z "$APT_CONFIG" ] || cat "$APT_CONFIG"')
    assert code == 0, out
    if sandbox_runtime.isolation.single_id:
        assert out.startswith("[/dev/"), out
        assert 'APT::Sandbox::User "root";' in out
    else:
        assert out.startswith("[]\n"), out
    code, out = run(sandbox_runtime, snap, 'echo "[$APT_CONFIG]"', env=("APT_CONFIG=/mine",))
    assert (code, out) == (0, "[/mine]\n")  # the Dockerfile's own choice is kept
    assert set(layer_entries(sandbox_runtime, snap, tmp_path)) == {"etc", "etc/apt"}


def _start(runtime: Runtime, snap: Snapshot, argv: tuple[str, ...],
           **kwargs: object) -> tuple[int, str]:
    chunks: list[bytes] = []
    code = runtime.run(snap, RunSpec(argv, **kwargs), chunks.append)  # type: ignore[arg-type]
    return code, b"".join(chunks).decode()


def test_a_program_that_cannot_start_fails_as_under_runc(sandbox_runtime: Runtime,
                                                         snap: Snapshot) -> None:
    """Exit code 1 and runc's words (checked against BuildKit 0.13): Go's ``exec.LookPath``
    decides what runs, so a PATH entry holding the name not executable is passed over."""
    assert run(sandbox_runtime, snap, "mkdir -p /p1 /p2 /d && printf '#!/bin/sh\\necho second\\n' > /p1/tool"
               " && cp /p1/tool /p2/tool && chmod 644 /p1/tool && chmod 755 /p2/tool"
               " && echo data > /text && chmod 755 /text && echo x > /plain")[0] == 0
    cases = {
        ("/no/such",): 'exec: "/no/such": stat /no/such: no such file or directory',
        ("/plain/x",): 'exec: "/plain/x": stat /plain/x: not a directory',
        ("/plain",): 'exec: "/plain": permission denied',
        ("/d",): 'exec: "/d": permission denied',
        ("nothere", "x"): 'exec: "nothere": executable file not found in $PATH',
        ("",): 'exec: "": executable file not found in $PATH',
    }
    for argv, text in cases.items():
        code, out = _start(sandbox_runtime, snap, argv)
        assert (code, out) == (1, f"unable to start container process: {text}\n"), argv
    assert _start(sandbox_runtime, snap, ("/text",)) == (1, "exec /text: exec format error\n")
    assert _start(sandbox_runtime, snap, ("tool",), env=("PATH=/p1:/p2",)) == (0, "second\n")
    assert _start(sandbox_runtime, snap, ("tool",), env=("PATH=/p1",))[0] == 1
