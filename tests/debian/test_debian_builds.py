"""Realistic builds on a real Debian 12 base (debootstrap minbase, see ocibuild.testing.debian):
apt-get install from Debian's archive, useradd + USER + COPY --chown, a .deb made in one stage
and installed with dpkg -i in the next, setuid files, file capabilities, hard links and
whiteouts of base files.

With real root, chroot or a sub-id range (``ids.exact``) every owner must be what dpkg, apt and
useradd set, as with BuildKit. With one mapped id the seccomp filter makes chown/setuid succeed
without effect (and the build warns): a path a RUN rewrites keeps the owner recorded below it,
a new one is root's; what COPY --chown sets and what the base had stay exact in every mode.
"""

from __future__ import annotations

import os
import pwd

import pytest
from debian_cases import APT, APT_CACHE, DPKG, USERS, USERS_FILES
from debian_layers import CAP_NET_BIND_SERVICE, CAP_NET_RAW, by_name, file_caps, members

from ocibuild.testing.flatten import Entry, listing

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SHADOW = 42  # gid of group shadow, as Debian's base-passwd has it
APT_UID = 42  # uid of _apt
WWW = 33  # www-data
ADM = 4  # group adm: apt's term.log
SINGLE_ID_WARNING = "ownership changes made by RUN"


def builder_ids() -> set[int]:
    """Ids that would betray the builder's own account in a layer: this process's and those
    of tests/run-rootless.sh's users (and 1000, the usual first login account)."""
    ids = {os.getuid(), os.getgid(), 1000}
    for name in ("ocibuild-sub", "ocibuild-nosub"):
        try:
            account = pwd.getpwnam(name)
        except KeyError:
            continue
        ids |= {account.pw_uid, account.pw_gid}
    return ids - {0}


def assert_no_builder_ids(built, allowed: set[int]) -> None:  # type: ignore[no-untyped-def]
    """Every member of every layer is owned by ids the image defines: ``allowed`` (plus those
    of the base layer), never the builder's uid or a sub-id range's."""
    bad = []
    for i, layer in enumerate(built.layer_paths()):
        for m in members(layer):
            for what, value in (("uid", m.uid), ("gid", m.gid)):
                if (value in builder_ids() or (value >= 100_000)
                        or (i > 0 and value not in allowed)):
                    bad.append(f"layer {i}: {m.name} {what} {value}")
    assert not bad, "\n".join(bad[:20])


def entry(built, path: str) -> Entry:  # type: ignore[no-untyped-def]
    tree = built.image.tree
    assert path in tree, f"{path} missing from the image"
    return tree[path]


def hard_linked(built, *paths: str) -> bool:  # type: ignore[no-untyped-def]
    """Whether ``paths`` are one hard-link group of the flattened image."""
    groups = [line.split()[1:] for line in listing(built.image.tree)
              if line.startswith("hardlinks: ")]
    return sorted(paths) in groups


def owner(e: Entry) -> tuple[int, int, int]:
    return e.mode, e.uid, e.gid


def file_text(built, path: str) -> str:  # type: ignore[no-untyped-def]
    """Content of a regular file of the image: read from the top-most layer holding it."""
    import gzip
    import tarfile

    want = path.lstrip("/")
    for layer in reversed(built.layer_paths()):
        with gzip.open(layer) as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
            for m in tar:
                if m.name.removeprefix("./").lstrip("/") == want and m.isreg():
                    f = tar.extractfile(m)
                    assert f is not None
                    return f.read().decode()
    raise AssertionError(f"{path}: no regular file in any layer")


# apt drops to _apt with setgroups/setgid/setuid and then checks getgid()/getuid(): the
# single-id seccomp filter fakes the first but not the second, so the sandbox points APT_CONFIG
# at a file setting APT::Sandbox::User root in that mode (ocibuild/executor/rootfs.py). The
# explicit option stays tested too.
APT_NO_SANDBOX = "-o APT::Sandbox::User=root"


def expected_owner(reg, ids, path: str, exact: tuple[int, int]) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """What a RUN's chown leaves: ``exact`` where ids are exact; with one mapped id the
    owner recorded for the path below (the base's), root for a new path."""
    if ids.exact:
        return exact
    below = reg.tree.get(path)
    return (below.uid, below.gid) if below is not None else (0, 0)


@pytest.mark.rootless
@pytest.mark.chroot
def test_apt_install_setuid_caps_whiteouts(build_image, debian_registry,  # type: ignore[no-untyped-def]
                                           ids) -> None:
    check_apt(build_image(APT.replace(" @OPTS@", "")), debian_registry, ids)


@pytest.mark.rootless
def test_apt_install_single_id_without_apt_sandbox(build_image, debian_registry,  # type: ignore[no-untyped-def]
                                                   ids) -> None:
    """The same with apt told not to drop to _apt: dpkg's chown/chmod/setcap under the
    single-id seccomp filter."""
    if ids.exact:
        pytest.skip("only the single-id rootless mode needs apt's sandbox user off")
    check_apt(build_image(APT.replace("@OPTS@", APT_NO_SANDBOX)), debian_registry, ids)


def check_apt(built, reg, ids) -> None:  # type: ignore[no-untyped-def]
    layers = built.layer_paths()
    assert len(layers) == 3
    assert built.image.manifest["layers"][0]["digest"] == _base_layer_digest(reg)

    # the apt layer: packages from Debian's archive, passwd reinstalled by dpkg
    apt_layer = by_name(layers[1])
    assert "usr/sbin/setcap" in apt_layer and "usr/sbin/getcap" in apt_layer
    # The copy snapshotter (chroot mode) diffs two trees as containerd's double walk does
    # (BuildKit's native snapshotter too): a reinstalled file with the same bytes, mode, owner
    # and mtime is no change there; an overlay upper dir holds every file dpkg rewrote.
    for path in ("usr/bin/passwd", "usr/bin/chage"):
        assert path in apt_layer or ids.mode == "chroot", path
    if "usr/bin/passwd" in apt_layer:
        passwd = apt_layer["usr/bin/passwd"]
        assert (passwd.kind, passwd.mode, passwd.uid, passwd.gid) == ("f", 0o4755, 0, 0)
    chage = apt_layer["usr/bin/chage"] if "usr/bin/chage" in apt_layer else entry(
        built, "/usr/bin/chage")
    assert (chage.kind, chage.mode) == ("f", 0o2755)
    assert (chage.uid, chage.gid) == expected_owner(reg, ids, "/usr/bin/chage", (0, SHADOW))
    # whiteouts of base files, none for what the RUN both made and removed
    assert apt_layer["var/lib/apt/lists/.wh.partial"].kind == "f"
    assert apt_layer["usr/share/doc/.wh.bash"].kind == "f"
    assert not [n for n in apt_layer if n.startswith("var/lib/apt/lists/")
                and not n.startswith("var/lib/apt/lists/.wh.")]
    tree = built.image.tree
    assert "/var/lib/apt/lists/partial" not in tree and "/usr/share/doc/bash" not in tree
    assert "/usr/share/doc/bash/copyright" not in tree
    assert entry(built, "/var/lib/apt/lists").kind == "d"
    # apt made its download dir private to _apt, as on any Debian system
    path = "/var/cache/apt/archives/partial"
    assert owner(entry(built, path)) == (0o700, *expected_owner(reg, ids, path, (APT_UID, 0)))
    assert owner(entry(built, "/usr/bin/passwd")) == (0o4755, 0, 0)
    assert owner(entry(built, "/etc/shadow")) == (0o640, 0, SHADOW)  # from the base
    path = "/var/log/apt/term.log"
    assert owner(entry(built, path)) == (0o640, *expected_owner(reg, ids, path, (0, ADM)))

    # the setcap layer: file capabilities kept byte for byte, hard links as links
    cap_layer = by_name(layers[2])
    netcap = cap_layer["usr/local/bin/netcap"]
    assert (netcap.kind, netcap.mode, netcap.uid, netcap.gid) == ("f", 0o755, 0, 0)
    assert netcap.xattrs.get("security.capability") == file_caps(CAP_NET_RAW,
                                                                 CAP_NET_BIND_SERVICE)
    link = cap_layer["usr/local/bin/netcap-link"]
    assert (link.kind, link.linkname) == ("h", "usr/local/bin/netcap")
    assert entry(built, "/usr/local/sbin/passwd-link") == Entry(
        "f", 0o4755, 0, 0, passwd_entry(built).size, passwd_entry(built).sha256,
        link=entry(built, "/usr/local/sbin/passwd-link").link)
    if ids.mode != "chroot":
        # The copy snapshotter's double walk ignores link counts: passwd itself did not change,
        # so it is not in the layer and its new link is written as a plain copy (as with
        # containerd's double-walking differ); overlay copies passwd up and links both.
        assert hard_linked(built, "/usr/bin/passwd", "/usr/local/sbin/passwd-link")
    assert hard_linked(built, "/usr/local/bin/netcap", "/usr/local/bin/netcap-link")

    cfg = built.image.config["config"]
    assert cfg.get("Env") == [PATH_ENV]  # the ARG is not kept
    assert cfg.get("Cmd") == ["bash"]
    assert built.image.config["architecture"] == "amd64" and built.image.config["os"] == "linux"
    assert_no_builder_ids(built, {0, SHADOW, APT_UID, ADM})
    if not ids.exact:
        assert SINGLE_ID_WARNING in built.log


def passwd_entry(built) -> Entry:  # type: ignore[no-untyped-def]
    return entry(built, "/usr/bin/passwd")


def _base_layer_digest(reg) -> str:  # type: ignore[no-untyped-def]
    import hashlib

    h = hashlib.sha256()
    with open(reg.base.layer, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


@pytest.mark.rootless
@pytest.mark.chroot
def test_useradd_user_copy_chown(build_image, debian_registry, ids) -> None:  # type: ignore[no-untyped-def]
    built = build_image(USERS, files=USERS_FILES)
    app = (1234, 1234)
    passwd = file_text(built, "/etc/passwd")
    assert "app:x:1234:1234::/home/app:/bin/bash\n" in passwd
    assert "app:x:1234:\n" in file_text(built, "/etc/group")
    assert "\napp:!:" in "\n" + file_text(built, "/etc/shadow") or \
        "\napp:*:" in "\n" + file_text(built, "/etc/shadow")
    shadow = entry(built, "/etc/shadow")
    assert (shadow.mode, shadow.uid) == (0o640, 0)
    assert shadow.gid == SHADOW  # rewritten by useradd, group kept
    for path in ("/home/app", "/home/app/.bashrc"):
        e = entry(built, path)
        assert (e.uid, e.gid) == expected_owner(debian_registry, ids, path, app), path

    # COPY --chown is exact in every mode, also on the parent COPY made and across a RUN that
    # only linked and chmodded the file (copy-up must keep the owner)
    for path in ("/srv/app", "/srv/app/data", "/srv/app/data/sub"):
        assert owner(entry(built, path)) == (0o755, *app), path
    for path in ("/srv/app/data/a.txt", "/srv/app/data/sub/b.txt"):
        assert owner(entry(built, path)) == (0o644, *app), path
    conf = entry(built, "/srv/app/app.conf")
    assert owner(conf) == (0o640, *app)
    assert owner(entry(built, "/srv/app/app.conf.link")) == (0o640, *app)
    assert hard_linked(built, "/srv/app/app.conf", "/srv/app/app.conf.link")
    assert owner(entry(built, "/srv")) == (0o755, 0, 0)

    # WORKDIR made for USER app; what the RUN as app wrote
    work = entry(built, "/home/app/work")
    assert (work.kind, work.uid, work.gid) == ("d", *app)
    if ids.exact:
        assert file_text(built, "/home/app/work/uid.txt") == "1234\n"
        assert file_text(built, "/home/app/work/group.txt") == "app\n"
        for path in ("/home/app/work/uid.txt", "/home/app/work/cache",
                     "/home/app/work/cache/made-by-app"):
            e = entry(built, path)
            assert (e.uid, e.gid) == app, path
    else:
        assert SINGLE_ID_WARNING in built.log
        assert "/home/app/work/cache/made-by-app" in built.image.tree

    cfg = built.image.config["config"]
    assert cfg.get("User") == "app"
    assert cfg.get("WorkingDir") == "/home/app/work"
    assert cfg.get("Cmd") == ["bash", "-l"]
    assert cfg.get("Env") == [PATH_ENV]
    assert_no_builder_ids(built, {0, 1234, SHADOW})


@pytest.mark.chroot
def test_dpkg_install_of_deb_built_in_earlier_stage(build_image, debian_registry,  # type: ignore[no-untyped-def]
                                                    ids) -> None:
    built = build_image(DPKG)
    layers = built.layer_paths()
    assert len(layers) == 3  # base, COPY, RUN: nothing of the pkg stage
    copied = by_name(layers[1])
    assert copied["tmp/hello.deb"].kind == "f"
    ran = by_name(layers[2])
    assert ran["tmp/.wh.hello.deb"].kind == "f"  # whiteout of the lower layer's file
    tree = built.image.tree
    assert "/tmp/hello.deb" not in tree and "/build" not in tree
    assert owner(entry(built, "/usr/local/bin/hello")) == (0o755, 0, 0)
    assert owner(entry(built, "/usr/local/bin/hello-suid")) == (0o4755, 0, 0)
    for path, mode in (("/var/www/hello", 0o755), ("/var/www/hello/index.html", 0o644)):
        www = expected_owner(debian_registry, ids, path, (WWW, WWW))
        assert owner(entry(built, path)) == (mode, *www), path
    assert owner(entry(built, "/var/www")) == (0o755, 0, 0)
    assert file_text(built, "/hello.out") == "hello from deb\n"
    listed = file_text(built, "/var/lib/dpkg/info/ocibuild-hello.list").split()
    assert "/usr/local/bin/hello-suid" in listed and "/var/www/hello/index.html" in listed
    status = file_text(built, "/var/lib/dpkg/status")
    assert "Package: ocibuild-hello\nStatus: install ok installed\n" in status
    assert built.image.config["config"].get("Cmd") == ["bash"]
    assert_no_builder_ids(built, {0, WWW})


@pytest.mark.rootless
def test_apt_with_cache_mounts(build_image, ids) -> None:  # type: ignore[no-untyped-def]
    """Two builds share the apt cache mounts: the second downloads no package again, and no
    layer holds package lists or .deb files (the cache mounts are not part of the RUN)."""
    first = build_image(APT_CACHE.replace("@N@", "1").replace("@PKG@", "libcap2-bin"))
    assert "Get:" in first.log and "libcap2-bin" in first.log
    second = build_image(APT_CACHE.replace("@N@", "2").replace("@PKG@", "libcap2-bin"))
    assert "Need to get 0 B/" in second.log, second.log[-3000:]
    for built in (first, second):
        layer = by_name(built.layer_paths()[1])
        assert "usr/sbin/setcap" in layer
        leaked = [n for n in layer if n.startswith(("var/cache/apt/", "var/lib/apt/"))]
        assert not leaked, leaked
        tree = built.image.tree
        assert owner(entry(built, "/var/cache/apt/archives/partial")) == (0o755, 0, 0)  # base's
        assert "/var/lib/apt/lists/partial" in tree
        assert "/var/lib/dpkg/info/libcap2-bin.list" in tree
