"""Random differential testing of ocibuild against the reference BuildKit.

A tool run by hand (not a test: pytest does not collect it). It generates random but valid
multi-stage Dockerfiles over the busybox bases of the conformance corpus, each with a small
random build context, builds every one with both builders and compares the renderings of
``conformance.render``:

    eval "$(../shared/tools/buildkit-oracle.sh)"
    python tests/conformance/fuzz.py --seed 1 --count 50 [--out /tmp/fuzz] [--print]

``--print`` only prints the generated Dockerfiles (no builds). The same seed and ``--gen``
always give the same Dockerfile and context. Generator versions (each adds to the one before,
without changing what an older version draws): 1 stages, ARG/ENV/LABEL/WORKDIR/USER, RUN
(files, dirs, links, chmod/chown, fifos, rm/rm -rf, mv, cp -a), COPY/ADD (globs, --chown,
--chmod, --from, local archives), heredocs, config instructions, ONBUILD, --target; 2 type
changes across layers, users added by RUN, COPY through symlinks, VOLUME, RUN --mount
bind/tmpfs; 3 parser and expansion corners (case, blanks, continuations with comments, quoting,
nested ``${:-}``, JSON COPY, ``..`` paths); 4 heredoc forms, globs in --from, platform ARGs,
exec-form words, supplementary groups; 5 setgid/sticky/odd-mode parents made first, archives
with implied directories; 6 as 5, with base paths a RUN removed forgotten (5 could
still pick them as existing directories for --chmod); 7 (default) ``COPY --link`` (onto
existing paths, through symlinks), ``ADD --chown/--chmod`` of plain files and ``--chmod`` of
archives, cache mounts (id, uid/gid/mode, sharing) and ``rw`` binds from stages, the context and images, SHELL
forms, setuid/setgid/sticky/000/0777 modes and writes in VOLUME paths, empty and long names,
paths flipping between file and directory, WORKDIR through symlinks, hard links in the context
and across ``COPY --from``, symlinked ``--from`` sources and context links, ``.dockerignore``
patterns, global ARGs overridden by ``--build-arg`` and re-declared in stages, multi-key ARG,
config bursts for ``FROM <stage>`` chains (which 7 draws more often).

A mismatch (or a build only one builder accepts) is written as a case directory
``OUT/seed-N/`` (``Dockerfile``, ``ctx/``, ``args.json``, ``buildkit.txt``, ``ocibuild.txt``)
to be reduced by hand into a ``cases/fuzz-<what>`` case. What BuildKit 0.13 writes differently
from current BuildKit (``test_conformance.CURRENT_BUILDKIT``) is not reported: ARG, EXPOSE and
HEALTHCHECK history lines are masked, RUN's ``|N k=v`` list is normalised to current's rule (a
re-declared ARG once) and dropped when a FROM names a stage (current inherits its ARGs), and
``--chmod`` only copies into existing directories (current gives created ones its mode); with
a FROM naming a stage, config Labels/ExposedPorts/Volumes that only 0.13 has are dropped (its
stages shared those maps, ``unshare_maps``); 0.13 shared the base's history slice too (case
``fuzz-sibling-stage-history``), which is not masked: a history line of a sibling stage in
BuildKit's rendering is that, not a difference to reduce. Besides the flattened renderings, each layer's own
entries are compared (status ``LAYERS``, ``layers.txt``; ``--no-layers`` skips it).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

BASES = ("localhost:5000/busybox:latest", "localhost:5000/busybox:1.36",
         "localhost:5000/alpine:3.19", "localhost:5000/debian:bookworm-slim")
ROOTS = ("/opt/a", "/srv/b", "/data", "/app", "/usr/local/share/x", "/etc/conf.d",
         "/var/lib/z", "/home/app/w", "/tmp/t")
USERS = ("root", "app", "1000", "1000:1000", "app:users", "daemon", "nobody", "4242",
         "app:app", "0:100", "bin:staff")
CHOWNS = ("app:app", "1000", "app", "1000:100", "daemon:staff", "0:0", "nobody:nogroup",
          "4242:4242")
CHMODS = ("0640", "755", "0700", "600", "0444", "4755", "1777", "0775")
WORDS = ("alpha", "beta", "gamma", "delta", "x y", "a=b", "sp ace", "dollar$x", "ümlaut")
MASKED = ("ARG ", "EXPOSE ", "HEALTHCHECK ")
IGNORES = ("**/.hidden", "d*/sub", "d0/g1.txt", "d0/sub\n!d0/sub/deep.txt", "**/g2.txt",
           "*/sub/*", "# a comment", "  d2/g0.txt  ", "./d0/link", "/d1/g1.txt", "d?/g[01].txt",
           "d1/*\n!d1/g0.txt", "**/*.txt\n!f*.txt", "d0/../d1/g0.txt", "d2/**", "!**/deep.txt",
           "d*/g?.txt\n!d0/g1.txt", "*/.*", "**/link")


@dataclass
class Stage:
    name: str
    index: int
    shell: bool  # has /bin/sh (RUN allowed)
    paths: dict[str, str] = field(default_factory=dict)  # abs path -> f|d|l (made by the file)
    env: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    user_root: bool = True
    workdir: str = "/"
    onbuild: bool = False
    gone: set[str] = field(default_factory=set)  # version 7: base paths a RUN removed


@dataclass
class Generated:
    dockerfile: str
    ctx: dict[str, Any]  # rel path -> bytes | ("dir",) | ("link", target)
    args: dict[str, Any]
    stage_bases: bool = False  # a FROM names an earlier stage


class Gen:
    """One random Dockerfile; every choice comes from ``rng`` so a seed reproduces it."""

    def __init__(self, rng: random.Random, version: int = 7) -> None:
        self.r = rng
        self.v = version  # 1: the first generator (seeds 100-499 of the first runs)
        self.lines: list[str] = []
        self.stages: list[Stage] = []
        self.ctx: dict[str, Any] = {}
        self.ctx_files: list[str] = []
        self.ctx_dirs: list[str] = []
        self.archives: list[str] = []
        self.build_args: dict[str, str] = {}
        self.global_args: list[str] = []
        self.counter = 0
        self.stage_bases = False
        self.specials: list[list[str]] = []  # version 7: args.json "specials" (hard links)
        self.hardlinked: list[tuple[str, str]] = []  # version 7: (stage, dir with hard links)
        self.symlinked: list[tuple[str, str]] = []  # version 7: (stage, dir with symlinks)

    # -- helpers
    def uniq(self, prefix: str = "n") -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def pick(self, seq: Any) -> Any:
        return self.r.choice(list(seq))

    def text(self) -> str:
        return " ".join(self.r.choice(WORDS[:4]) for _ in range(self.r.randint(1, 3)))

    # -- context
    def make_context(self) -> None:
        r = self.r
        for i in range(r.randint(2, 5)):
            name = f"f{i}.txt" if self.chance(0.7) else f"f{i}.sh"
            self.ctx[name] = f"file {i} {self.text()}\n".encode()
            self.ctx_files.append(name)
        for i in range(r.randint(1, 3)):
            d = f"d{i}"
            self.ctx[d] = ("dir",)
            self.ctx_dirs.append(d)
            for j in range(r.randint(0, 3)):
                self.ctx[f"{d}/g{j}.txt"] = f"{d} {j}\n".encode()
                self.ctx_files.append(f"{d}/g{j}.txt")
            if self.chance(0.4):
                self.ctx[f"{d}/sub"] = ("dir",)
                self.ctx[f"{d}/sub/deep.txt"] = b"deep\n"
                self.ctx_files.append(f"{d}/sub/deep.txt")
            if self.chance(0.3):
                self.ctx[f"{d}/.hidden"] = b"hidden\n"
            if self.chance(0.3) and any(k.startswith(d + "/g") for k in self.ctx):
                self.ctx[f"{d}/link"] = ("link", "g0.txt")
        if self.chance(0.3):
            self.ctx["ln-top"] = ("link", self.ctx_files[0])
        for i in range(r.randint(0, 2)):
            name = f"arch{i}.tar" if self.chance(0.5) else f"arch{i}.tar.gz"
            self.ctx[name] = self.make_tar(name.endswith(".gz"))
            self.archives.append(name)
        if self.chance(0.2):
            self.ctx[".dockerignore"] = b"*.sh\n!f0.sh\n"
            self.ctx_files = [f for f in self.ctx_files if not f.endswith(".sh") or f == "f0.sh"]

    def make_tar(self, gz: bool) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w", format=tarfile.PAX_FORMAT) as tar:
            def add(name: str, kind: str, mode: int, data: bytes = b"", link: str = "") -> None:
                info = tarfile.TarInfo(name)
                info.mode, info.mtime = mode, 1_600_000_000
                info.uid, info.gid = self.pick((0, 1000, 4242)), self.pick((0, 100, 1000))
                if kind == "d":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif kind == "l":
                    info.type, info.linkname = tarfile.SYMTYPE, link
                    tar.addfile(info)
                elif kind == "h":
                    info.type, info.linkname = tarfile.LNKTYPE, link
                    tar.addfile(info)
                else:
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
            top = self.pick(("pkg", "lib", "."))
            if top != "." and (self.v < 5 or self.chance(0.5)):  # v5: implied dirs too
                modes = (0o755, 0o750, 0o700) + ((0o2775,) if self.v >= 5 else ())
                add(top, "d", self.pick(modes))
            pre = "" if top == "." else top + "/"
            if self.v >= 5 and self.chance(0.5):
                add(pre + "imp/deep/d.txt", "f", 0o644, b"implied\n")
            add(pre + "a.txt", "f", self.pick((0o644, 0o600, 0o755)), b"tar a\n")
            if self.chance(0.5):
                add(pre + "b", "d", 0o755)
                add(pre + "b/c.txt", "f", 0o644, b"tar c\n")
            if self.chance(0.5):
                add(pre + "ln", "l", 0o777, link="a.txt")
            if self.chance(0.4):
                add(pre + "hard", "h", 0o644, link=pre + "a.txt")
        return buf.getvalue()

    # -- instructions
    def emit(self, line: str) -> None:
        self.lines.append(line)

    def var_ref(self, st: Stage) -> str | None:
        names = st.env + st.args
        if not names:
            return None
        v = self.pick(names)
        return self.pick((f"${v}", f"${{{v}}}", f"${{{v}:-dflt}}", f"${{{v}:+set}}",
                          f"${{UNSET_{v}:-fb}}"))

    def gen_from(self, idx: int) -> Stage:
        r = self.r
        name = f"s{idx}"
        prev = [s for s in self.stages if not s.onbuild or self.chance(0.8)]
        choice = r.random()
        platform = ""
        if choice < (0.4 if self.v >= 7 else 0.25) and prev:
            parent = self.pick(prev)
            base, shell = parent.name, parent.shell
            self.stage_bases = True
            st = Stage(name, idx, shell, dict(parent.paths), list(parent.env), [],
                       parent.user_root, parent.workdir, gone=set(parent.gone))
        elif choice < 0.33:
            base, shell = "scratch", False
            st = Stage(name, idx, shell)
        else:
            if "BASE" in self.global_args and self.chance(0.5):
                base = "${BASE}"
            else:
                base = self.pick(BASES)
            st = Stage(name, idx, True)
        if self.chance(0.1) and base not in ("scratch",) and not base.startswith("s"):
            platform = "--platform=$BUILDPLATFORM "
        self.emit(f"FROM {platform}{base} AS {name}" if self.chance(0.9) or base == "scratch"
                  else f"from {platform}{base} as {name}")
        return st

    def gen_stage(self, st: Stage, final: bool) -> None:
        r = self.r
        n = r.randint(2, 9)
        for _ in range(n):
            kinds = ["env", "arg", "label", "workdir", "copy", "copy", "config"]
            if st.shell:
                kinds += ["run", "run", "run", "run", "heredoc", "user"]
            if self.stages:
                kinds += ["copyfrom", "copyfrom"]
            if self.archives:
                kinds.append("add")
            if not final:
                kinds.append("onbuild")
            if self.v >= 2 and st.shell:
                kinds += ["special", "special", "mount"]
            if self.v >= 3:
                kinds += ["edge", "edge", "edge"]
            if self.v >= 4:
                kinds += ["more", "more", "more"]
            if self.v >= 7:
                kinds += ["seven"] * 5
            getattr(self, "i_" + self.pick(kinds))(st)
        if not st.user_root and self.chance(0.5):
            self.emit("USER root")
            st.user_root = True

    def i_env(self, st: Stage) -> None:
        k = self.uniq("E")
        ref = self.var_ref(st)
        val = self.pick(("v1", "\"two words\"", "/opt/p", "'single $q'", "a\\ b"))
        if ref and self.chance(0.6):
            val = self.pick((f"{ref}/x", f"\"pre-{ref}\"", ref))
        if self.chance(0.2):
            self.emit(f"ENV {k} {val} tail")
        elif self.chance(0.3):
            k2 = self.uniq("E")
            self.emit(f"ENV {k}={val} {k2}=${k}-2")
            st.env.append(k2)
        else:
            self.emit(f"ENV {k}={val}")
        st.env.append(k)

    def i_arg(self, st: Stage) -> None:
        if self.global_args and self.chance(0.3) and self.global_args[-1] not in st.args:
            k = self.global_args[-1]
            self.emit(f"ARG {k}")
            st.args.append(k)
            return
        k = self.uniq("A")
        form = self.r.random()
        if form < 0.3:
            self.emit(f"ARG {k}")
        else:
            self.emit(f"ARG {k}={self.pick(('d1', 'def-val', '/p/q', chr(34) + 'q' + chr(34)))}")
        if self.chance(0.4):
            self.build_args[k] = self.pick(("cli", "from-cli", "c=d"))
        st.args.append(k)

    def i_label(self, st: Stage) -> None:
        ref = self.var_ref(st) or "plain"
        self.emit(self.pick((f"LABEL l{self.counter}=v", f"LABEL \"k {self.counter}\"=\"{ref}\"",
                             f"LABEL org.x.y={ref} other=2")))
        self.counter += 1

    def i_workdir(self, st: Stage) -> None:
        ref = self.var_ref(st)
        opts = [self.pick(ROOTS) + "/wd", "rel" + str(self.counter), "/", "sub/dir", "../up"]
        if ref:
            opts.append(f"/w/{ref}")
        w = self.pick(opts)
        self.counter += 1
        self.emit(f"WORKDIR {w}")
        st.workdir = "?"

    def i_user(self, st: Stage) -> None:
        u = self.pick(USERS)
        self.emit(f"USER {u}")
        st.user_root = u in ("root", "0:100")

    def i_config(self, st: Stage) -> None:
        c = self.r.randint(0, 9)
        if c == 0:
            self.emit(self.pick(('CMD ["sh", "-c", "echo hi"]', "CMD echo $HOME", "CMD []",
                                 'CMD ["--flag"]')))
        elif c == 1:
            self.emit(self.pick(('ENTRYPOINT ["/bin/sh", "-c"]', "ENTRYPOINT exec top",
                                 "ENTRYPOINT []", 'ENTRYPOINT ["env"]')))
        elif c == 2:
            ref = self.var_ref(st)
            ports = self.pick(("80", "443/udp 8080", "9000/tcp", "7000-7002"))
            self.emit(f"EXPOSE {ports}" + (f" {ref}" if ref and self.chance(0.1) else ""))
        elif c == 3:
            self.emit(self.pick(("VOLUME /data", 'VOLUME ["/v1", "/v2"]', "VOLUME /var/x /var/y")))
        elif c == 4:
            self.emit(self.pick(("STOPSIGNAL SIGTERM", "STOPSIGNAL 9", "STOPSIGNAL SIGUSR1")))
        elif c == 5:
            self.emit(self.pick(("HEALTHCHECK CMD true", "HEALTHCHECK NONE",
                                 "HEALTHCHECK --interval=30s --retries=2 CMD [\"true\"]")))
        elif c == 6 and st.shell:
            self.emit(self.pick(('SHELL ["/bin/sh", "-ec"]', 'SHELL ["/bin/sh", "-c"]',
                                 'SHELL ["/bin/sh", "-xc"]')))
        elif c == 7:
            self.emit("MAINTAINER fuzz <f@x>")
        else:
            self.i_label(st)

    # -- RUN
    def known(self, st: Stage, kinds: str) -> list[str]:
        return sorted(p for p, k in st.paths.items() if k in kinds)

    def forget(self, st: Stage, path: str) -> None:
        for p in list(st.paths):
            if p == path or p.startswith(path + "/"):
                del st.paths[p]

    def add_path(self, st: Stage, path: str, kind: str) -> None:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            st.paths.setdefault("/" + "/".join(parts[:i]), "d")
        st.paths[path] = kind

    def root_cmd(self, st: Stage) -> str:
        r = self.r
        files, dirs = self.known(st, "f"), self.known(st, "d")
        c = r.randint(0, 15)
        if c <= 2 or not files:
            d = self.pick(ROOTS) + ("/" + self.uniq("d") if self.chance(0.5) else "")
            f = f"{d}/{self.uniq('r')}.txt"
            self.add_path(st, f, "f")
            return f"mkdir -p {d} && echo {self.text()!r} > {f}"
        if c == 3:
            f = self.pick(files)
            return f"echo more >> {f}"
        if c == 4:
            f = self.pick(files)
            link = f + "-sym"
            self.add_path(st, link, "l")
            return f"ln -sf {f.rsplit('/', 1)[1]} {link}"
        if c == 5:
            f = self.pick(files)
            link = f + "-hard"
            if link in st.paths:
                return "true"
            self.add_path(st, link, "f")
            return f"ln {f} {link}"
        if c == 6:
            return f"chmod {self.pick(('600', '0755', 'g+w', '4755', 'o-r'))} {self.pick(files + dirs)}"
        if c == 7:
            return f"chown {self.pick(('1000', '1000:100', 'app:app', 'daemon', '0:50'))} {self.pick(files + dirs)}"
        if c == 8:
            d = self.pick(dirs) if dirs else "/srv"
            p = f"{d}/{self.uniq('fifo')}"
            self.add_path(st, p, "p")
            return f"mkfifo {p}"
        if c == 9:
            return f"touch -d '2020-01-02 03:04:05' {self.pick(files)}"
        if c == 10:
            f = self.pick(files)
            self.forget(st, f)
            return f"rm -f {f}"
        if c == 11 and dirs:
            d = self.pick(dirs)
            if d.count("/") < 2:
                d = d + "/" + self.uniq("q")
            self.forget(st, d)
            f = f"{d}/again.txt"
            self.add_path(st, f, "f")
            return f"rm -rf {d} && mkdir -p {d} && echo again > {f}"
        if c == 12:
            # not /etc/group in version 2: BuildKit 0.13 (docker driver) fails every later RUN
            # with "unable to find groups for spec root: invalid argument" (it reads the
            # whiteout); current BuildKit on an overlay snapshotter does not see it
            victim = self.pick(("/etc/group" if self.v == 1 else "/usr/bin/sum", "/home/app",
                                "/mnt", "/srv", "/usr/bin/yes", "/var/tmp", "/root"))
            if self.v >= 6:
                self.forget(st, victim)
            st.gone.add(victim)
            return f"rm -rf {victim}"
        if c == 13:
            f = self.pick(files)
            dst = f + ".mv"
            self.forget(st, f)
            self.add_path(st, dst, "f")
            return f"mv {f} {dst}"
        if c == 14:
            d = self.pick(dirs) if dirs else "/opt"
            dst = d.rstrip("/") + "-copy"
            if dst in st.paths or d in ("/", "/tmp"):
                return "true"
            for p, k in list(st.paths.items()):
                if p.startswith(d + "/"):
                    st.paths[dst + p[len(d):]] = k
            st.paths[dst] = "d"
            return f"cp -a {d} {dst}"
        f = self.pick(files)
        return f"echo $(wc -c < {f}) > {f}.size" + self.track(st, f + ".size")

    def track(self, st: Stage, path: str) -> str:
        self.add_path(st, path, "f")
        return ""

    def user_cmd(self, st: Stage) -> str:
        d = "/tmp/" + self.uniq("u")
        return self.pick((f"mkdir -p {d} && id > {d}/id.txt", f"echo $HOME > {d}.home",
                          f"touch {d}.t && stat -c '%u:%g %a' {d}.t > {d}.ls", "whoami > /tmp/who || true"))

    def i_run(self, st: Stage) -> None:
        cmds = [self.root_cmd(st) if st.user_root else self.user_cmd(st)
                for _ in range(self.r.randint(1, 3))]
        if st.user_root and self.chance(0.15):
            cmds.append(f"echo rel > {self.uniq('rel')}.txt")
        if self.chance(0.15) and st.user_root and len(cmds) == 1 and "&&" not in cmds[0] \
                and "$" not in cmds[0] and "'" not in cmds[0] and ">" not in cmds[0]:
            argv = cmds[0].split()
            self.emit("RUN " + json.dumps(argv))
            return
        if self.chance(0.1):
            self.emit('RUN ["/bin/sh", "-c", ' + json.dumps(" && ".join(cmds)) + "]")
            return
        ref = self.var_ref(st)
        tail = f" && echo {ref} > /tmp/{self.uniq('v')}" if ref and self.chance(0.3) else ""
        self.emit("RUN " + " && ".join(cmds) + tail)

    def i_heredoc(self, st: Stage) -> None:
        if self.chance(0.5) or not st.user_root:
            cmds = [self.root_cmd(st) if st.user_root else self.user_cmd(st)
                    for _ in range(self.r.randint(1, 3))]
            self.emit("RUN <<EOF\nset -e\n" + "\n".join(cmds) + "\nEOF")
            return
        dest = self.pick(ROOTS) + "/" + self.uniq("h") + ".conf"
        self.add_path(st, dest, "f")
        ref = self.var_ref(st) or "x"
        flag = f"--chown={self.pick(CHOWNS)} " if self.chance(0.3) else ""
        quote = self.pick(("EOF", '"EOF"'))
        self.emit(f"COPY {flag}<<{quote} {dest}\nkey={ref}\n$HOME\nEOF")

    # -- COPY / ADD
    def dest_for(self, st: Stage, kind: str) -> tuple[str, str]:
        """A destination: (as written, absolute dir it lands in or '' when unknown)."""
        r = self.r.random()
        if r < 0.15:
            return self.pick(("./", "rel/", ".")), ""
        root = self.pick(ROOTS) + "/" + self.uniq("c")
        if r < 0.3 and kind == "file":
            return root + ".txt", ""
        return root + "/", root

    def existing_dir(self, st: Stage) -> str:
        """A directory that exists already: BuildKit 0.13 gives the directories COPY --chmod
        creates mode 0755, current BuildKit the --chmod mode; only existing ones compare."""
        dirs = [p for p, k in st.paths.items() if k == "d" and p != "/tmp/t"]
        if st.shell:
            base = ["/opt", "/srv", "/home/app", "/"]
            if self.v >= 7:  # not one a RUN removed (version 6 still picked them)
                base = [d for d in base if not any(d == g or d.startswith(g + "/")
                                                   for g in st.gone)]
            dirs += base
        return (self.pick(dirs) if dirs else "/").rstrip("/") + "/"

    def flags(self, st: Stage, chmod: bool = False) -> str:
        out = ""
        if self.chance(0.25):
            # names need an /etc/passwd: BuildKit fails on a scratch stage without one
            out += f"--chown={self.pick(CHOWNS if st.shell else ('1000', '1000:100', '0:0'))} "
        if chmod:
            out += f"--chmod={self.pick(CHMODS)} "
        if self.chance(0.08):
            out += "--link "
        return out

    def i_copy(self, st: Stage) -> None:
        c = self.r.randint(0, 6)
        if c <= 1:
            srcs = self.r.sample(self.ctx_files, k=min(len(self.ctx_files), self.r.randint(1, 3)))
            kind = "file" if len(srcs) == 1 else "many"
        elif c == 2:
            srcs, kind = [self.pick(self.ctx_dirs) + self.pick(("", "/"))], "dir"
        elif c == 3:
            srcs, kind = [self.pick(("*.txt", "f*", "d*/g*.txt", "d?", "[fd]0*"))], "many"
        elif c == 4:
            srcs, kind = [self.pick((".", "./d0"))], "dir"
        elif c == 5 and "ln-top" in self.ctx:
            srcs, kind = ["ln-top"], "file"
        else:
            srcs, kind = [self.pick(self.ctx_files)], "file"
        chmod = self.chance(0.2)
        dest, where = self.dest_for(st, kind)
        if chmod:
            dest = where = self.existing_dir(st)
            where = where.rstrip("/") or "/"
        if kind == "many" and not dest.endswith("/"):
            dest += "/"
        if c != 3:  # a glob may match nothing
            self.land(st, where, srcs)
        self.emit(f"COPY {self.flags(st, chmod)}{' '.join(srcs)} {dest}")

    def land(self, st: Stage, where: str, srcs: list[str]) -> None:
        if where and where != "/":
            self.add_path(st, where, "d")
            for s in srcs:
                if s in self.ctx_files:
                    self.add_path(st, where.rstrip("/") + "/" + s.rsplit("/", 1)[-1], "f")

    def i_add(self, st: Stage) -> None:
        arch = self.pick(self.archives)
        dest, where = self.dest_for(st, "dir")
        if not dest.endswith("/") and dest not in (".",):
            dest += "/"
        if where:
            self.add_path(st, where, "d")
        flag = f"--chmod={self.pick(CHMODS)} " if self.chance(0.1) else ""
        self.emit(f"ADD {flag}{arch} {dest}")

    def i_copyfrom(self, st: Stage) -> None:
        sources = [s for s in self.stages if s.paths]
        if not sources or self.chance(0.15):
            src = self.pick(("/etc/passwd", "/etc/group", "/home/app", "/bin/busybox"))
            self.emit(f"COPY {self.flags(st)}--from={self.pick(BASES)} {src} /from-img/")
            self.add_path(st, "/from-img", "d")
            return
        other = self.pick(sources)
        paths = [p for p, k in other.paths.items() if k in "fd" and p not in ("/tmp",)]
        if not paths:
            return
        srcs = self.r.sample(sorted(paths), k=min(len(paths), self.r.randint(1, 2)))
        ref = other.name if self.chance(0.8) else str(other.index)
        chmod = self.chance(0.2)
        dest, where = self.dest_for(st, "many" if len(srcs) > 1 else "file")
        if chmod:
            dest = self.existing_dir(st)
            where = dest.rstrip("/")
        if len(srcs) > 1 and not dest.endswith("/"):
            dest += "/"
        if where:
            if where != "/":
                self.add_path(st, where, "d")
            for s in srcs:
                if other.paths[s] == "d":  # a directory's contents are copied, not itself
                    for p, k in other.paths.items():
                        if p.startswith(s + "/"):
                            self.add_path(st, where.rstrip("/") + p[len(s):], k)
                else:
                    self.add_path(st, where.rstrip("/") + "/" + s.rsplit("/", 1)[-1], "f")
        self.emit(f"COPY {self.flags(st, chmod)}--from={ref} {' '.join(srcs)} {dest}")

    # -- version 2: constructs aimed at the snapshot/diff and ownership code
    def i_special(self, st: Stage) -> None:
        c = self.r.randint(0, 11)
        files, dirs = self.known(st, "f"), self.known(st, "d")
        if not st.user_root:
            self.emit("USER root")
            st.user_root = True
        if c == 0:  # COPY through a symlinked directory
            real, link = f"/opt/{self.uniq('real')}", f"/opt/{self.uniq('lnk')}"
            self.emit(f"RUN mkdir -p {real} && ln -s {self.pick((real, real[5:]))} {link}")
            self.add_path(st, real, "d")
            src = self.pick(self.ctx_files)
            self.emit(f"COPY {self.flags(st)}{src} {link}/")
            self.add_path(st, real + "/" + src.rsplit("/", 1)[-1], "f")
        elif c == 1:  # a user added by RUN, then named by --chown and USER
            name, uid = self.uniq("svc"), self.r.randint(1100, 1900)
            self.emit(f"RUN echo '{name}:x:{uid}:{uid}::/home/{name}:/bin/sh' >> /etc/passwd"
                      f" && echo '{name}:x:{uid}:' >> /etc/group")
            d = self.pick(ROOTS) + "/" + self.uniq("o")
            self.emit(f"COPY --chown={name}:{name} {self.pick(self.ctx_files)} {d}/")
            self.add_path(st, d, "d")
            if self.chance(0.5):
                self.emit(f"USER {name}")
                self.emit(f"RUN id > /tmp/{self.uniq('id')} && echo $HOME > /tmp/{self.uniq('h')}")
                self.emit("USER root")
        elif c == 2 and files:  # a file of a lower layer becomes a dir, or a symlink
            f = self.pick(files)
            self.forget(st, f)
            if self.chance(0.5):
                self.emit(f"RUN rm -f {f} && mkdir -p {f} && echo in > {f}/in.txt")
                self.add_path(st, f + "/in.txt", "f")
            else:
                self.emit(f"RUN rm -f {f} && ln -s /etc/hostname {f}")
                st.paths[f] = "l"
        elif c == 3 and dirs:  # a dir of a lower layer becomes a file
            d = self.pick([x for x in dirs if x.count("/") >= 2] or ["/srv/b"])
            self.forget(st, d)
            self.emit(f"RUN rm -rf {d} && echo now-a-file > {d}")
            self.add_path(st, d, "f")
        elif c == 4 and files:  # a hard link across layers, then the first name removed
            f = self.pick(files)
            link = f + "-hl" + str(self.counter)
            self.counter += 1
            self.emit(f"RUN ln {f} {link}")
            self.emit(f"RUN rm -f {f} && echo changed >> {link}")
            self.forget(st, f)
            self.add_path(st, link, "f")
        elif c == 5:  # a VOLUME, then writes under it
            v = f"/vol{self.counter}"
            self.counter += 1
            self.emit(f"RUN mkdir -p {v} && chmod 1777 {v} && echo before > {v}/b.txt")
            self.emit(f"VOLUME {v}")
            self.emit(f"RUN echo after > {v}/a.txt")
            self.emit(f"COPY {self.pick(self.ctx_files)} {v}/")
        elif c == 6:  # a base directory's mode changed, then copied into
            d = self.pick(("/srv", "/opt", "/home/app", "/mnt", "/var"))
            self.emit(f"RUN chmod {self.pick(('700', '2775', '1777', '711'))} {d}")
            self.emit(f"COPY {self.flags(st)}{self.pick(self.ctx_files)} {d}/")
        elif c == 7:  # ARG defaults and ENV from each other
            e, a = self.uniq("E"), self.uniq("A")
            self.emit(f"ENV {e}=env-val")
            self.emit(f"ARG {a}=${{{e}}}-arg")
            self.emit(f"ENV {self.uniq('E')}=${a} PATH=/opt/{e}/bin:$PATH")
            st.env.append(e)
            st.args.append(a)
        elif c == 8:  # a whole base directory removed and made again
            d = self.pick(("/home", "/var", "/root", "/srv"))
            self.emit(f"RUN rm -rf {d} && mkdir -p {d}/new && echo x > {d}/new/x")
            self.forget(st, d)
            st.gone.add(d)
            self.add_path(st, f"{d}/new/x", "f")
        elif c == 9 and (files or dirs):  # COPY onto something of a lower layer
            target = self.pick(files + dirs)
            src = self.pick(self.ctx_files)
            dest = target + ("/" if target in dirs else "")
            self.emit(f"COPY {self.flags(st)}{src} {dest}")
        elif c == 10:  # WORKDIR made by a user, then used by it
            user = self.pick(("app", "1000:1000", "4242"))
            w = f"/work{self.counter}/{self.pick(('a', 'b/c'))}"
            self.counter += 1
            self.emit(f"USER {user}")
            self.emit(f"WORKDIR {w}")
            self.emit(f"COPY {self.pick(self.ctx_files)} .")
            self.emit("RUN touch mine 2>/dev/null || echo denied > /tmp/denied")
            self.emit("USER root")
        else:  # a deep tree removed in one RUN, partly recreated in the next
            d = f"/tree{self.counter}"
            self.counter += 1
            self.emit(f"RUN mkdir -p {d}/a/b/c {d}/x && echo 1 > {d}/a/b/c/f && echo 2 > {d}/x/g"
                      f" && ln -s a/b {d}/ab && chmod 750 {d}/a")
            self.emit(f"RUN rm -rf {d}/a && mkdir -p {d}/a/b && echo 3 > {d}/a/b/h")
            self.add_path(st, f"{d}/x/g", "f")
            self.add_path(st, f"{d}/a/b/h", "f")

    def i_mount(self, st: Stage) -> None:
        dst = f"/tmp/m{self.counter}"
        self.counter += 1
        c = self.r.randint(0, 2)
        src = self.pick(self.ctx_files)
        if c == 0:
            self.emit(f"RUN --mount=type=bind,source={src},target=/mnt/in cat /mnt/in > {dst}")
        elif c == 1:
            self.emit(f"RUN --mount=type=tmpfs,target=/scratch echo t > /scratch/t && ls /scratch > {dst}")
        else:
            others = [x for x in self.stages if x.paths]
            if not others:
                return
            other = self.pick(others)
            path = self.pick(sorted(p for p, k in other.paths.items() if k in "fd"))
            self.emit(f"RUN --mount=type=bind,from={other.name},source={path},target=/mnt/s"
                      f" cp -a /mnt/s {dst}")
        if not st.user_root:
            return
        self.add_path(st, dst, "f")

    def i_more(self, st: Stage) -> None:
        """Version 4: heredoc forms, globs across stages, platform ARGs, exec-form words."""
        c = self.r.randint(0, 11)
        shell_root = st.shell and st.user_root
        if c == 0 and shell_root:
            d = f"/hd{self.counter}"
            self.counter += 1
            self.emit(f"RUN mkdir -p {d} && cat <<A > {d}/a <<B > {d}/b\nfirst $HOME\nA\nsecond\nB")
            self.add_path(st, d + "/a", "f")
        elif c == 1 and shell_root:
            self.emit("RUN <<-EOT\n\tmkdir -p /tabbed\n\techo \"tab $HOME\" > /tabbed/t\n\tEOT")
            self.add_path(st, "/tabbed/t", "f")
        elif c == 2:
            d = f"/multi{self.counter}/"
            self.counter += 1
            self.emit(f"COPY {self.flags(st)}<<one <<\"two\" {d}\n1 $HOME\none\n2 $HOME\ntwo")
            self.add_path(st, d + "one", "f")
        elif c == 3:
            others = [x for x in self.stages if any(k == "f" for k in x.paths.values())]
            if not others:
                return
            other = self.pick(others)
            f = self.pick(sorted(p for p, k in other.paths.items() if k == "f"))
            head, _, name = f.rpartition("/")
            pattern = (head or "") + "/" + self.pick((name[:2] + "*", "*", name[:-1] + "?"))
            self.emit(f"COPY --from={other.name} {pattern} /glob{self.counter}/")
            self.counter += 1
        elif c == 4:
            self.emit("ARG TARGETARCH")
            self.emit("ARG TARGETOS")
            self.emit("ENV PLAT=${TARGETOS}-${TARGETARCH}")
            st.env.append("PLAT")
            if shell_root:
                self.emit(f"RUN echo $TARGETARCH $PLAT > /tmp/plat{self.counter}")
                self.counter += 1
        elif c == 5 and shell_root:
            self.emit(f'RUN ["sh", "-c", "echo $0 $1 > /tmp/x{self.counter}", "zero", "$HOME"]')
            self.counter += 1
        elif c == 6:
            self.emit(f"ENV PATH=/opt/tools{self.counter}:$PATH")
            self.counter += 1
            if st.shell:
                self.emit(self.pick(('CMD ["env"]', "ENTRYPOINT env")))
        elif c == 7 and shell_root:
            g = self.r.randint(3000, 3999)
            self.emit(f"USER 1000:{g}")
            self.emit(f"RUN id > /tmp/gid{g}")
            self.emit("USER root")
        elif c == 8:
            self.emit(f"COPY {self.flags(st)}{self.pick(self.ctx_dirs)}/. /dots{self.counter}/")
            self.counter += 1
        elif c == 9 and shell_root:
            d = f"/own{self.counter}"
            self.counter += 1
            self.emit(f"RUN mkdir -p {d}/keep && chown 1000:1000 {d} {d}/keep && chmod 2770 {d}")
            self.emit(f"COPY --chown=app:users {self.pick(self.ctx_files)} {d}/keep/")
            self.emit(f"COPY {self.pick(self.ctx_dirs)} {d}/")
        elif c == 10 and shell_root:
            self.emit(f"RUN <<EOF sh -x\nmkdir -p /shx{self.counter}\ntouch /shx{self.counter}/a\nEOF")
            self.counter += 1
        else:
            self.emit(f"LABEL multi{self.counter}=a \\\n    multi{self.counter}b=\"c d\"")
            self.counter += 1

    def i_onbuild(self, st: Stage) -> None:
        st.onbuild = True
        self.emit(self.pick((f"ONBUILD RUN mkdir -p /onb && echo {self.uniq('t')} > /onb/t",
                             f"ONBUILD COPY {self.pick(self.ctx_files)} /onb/",
                             "ONBUILD ENV ONB=1", "ONBUILD LABEL onb=yes",
                             "ONBUILD WORKDIR /onbwd")))

    def generate(self) -> Generated:
        self.make_context()
        if self.v >= 7 and self.chance(0.3):
            self.ignore_patterns()
        if self.chance(0.5):
            self.global_args.append("BASE")
            self.emit(f"ARG BASE={self.pick(BASES)}")
            if self.chance(0.3):
                self.build_args["BASE"] = self.pick(BASES).replace("localhost:5000", "localhost:5000")
        if self.chance(0.3):
            self.global_args.append("G1")
            self.emit("ARG G1=global-default")
        if self.v >= 7 and self.chance(0.6):
            self.global_args.append("G7")
            # no blank in the value: masked() cannot tell it from the RUN command after it
            self.emit(self.pick(("ARG G7=g7-default", "ARG G7", "ARG G7=\"g7=q\"")))
            if self.chance(0.6):
                self.build_args["G7"] = self.pick(("g7-cli", "/cli/path", ""))
        count = self.r.randint(1, 4)
        for idx in range(count):
            st = self.gen_from(idx)
            if self.v >= 5 and st.shell and self.chance(0.6):
                if self.v >= 7 and not st.user_root:  # a base stage's USER is inherited
                    self.emit("USER root")
                    st.user_root = True
                self.prelude(st)
            # a stage FROM an ONBUILD stage: its triggers may RUN, needing a shell: all bases
            # that carry triggers have one (scratch stages get no RUN triggers).
            self.gen_stage(st, final=idx == count - 1)
            self.stages.append(st)
            self.emit("")
        args: dict[str, Any] = {}
        if self.build_args:
            args["build_args"] = dict(self.build_args)
        if count > 1 and self.chance(0.15):
            args["target"] = self.pick(self.stages[:-1]).name
        if self.specials:
            args["specials"] = self.specials
        lines = [self.mangle(x) for x in self.lines] if self.v >= 3 else self.lines
        return Generated("\n".join(lines).rstrip() + "\n", self.ctx, args, self.stage_bases)

    def ignore_patterns(self) -> None:
        """Version 7: .dockerignore patterns over the context's directories; files a COPY
        names are then drawn from the top level only, which no pattern leaves out."""
        patterns = self.r.sample(IGNORES, k=self.r.randint(1, 4))
        old = self.ctx.get(".dockerignore", b"").decode()
        # **/link last: a link whose target a pattern left out dangles, and BuildKit before
        # 0.25 (74d177910) fails to checksum a dangling link inside a directory a wildcard
        # matches (COPY d? /x/); current BuildKit and ocibuild copy it
        self.ctx[".dockerignore"] = (old + "\n".join(patterns) + "\n**/link\n").encode()
        self.ctx_files = [f for f in self.ctx_files if "/" not in f]

    def prelude(self, st: Stage) -> None:
        """Version 5: directories with setgid, sticky or odd modes and groups that the rest of
        the stage then creates things under (WORKDIR, COPY, ADD, RUN)."""
        roots = self.r.sample(ROOTS, k=self.r.randint(1, 3))
        cmds = []
        for root in roots:
            mode = self.pick(("2775", "2770", "3777", "1777", "2755", "0711"))
            cmds.append(f"mkdir -p {root} && chown {self.pick(('0:50', '1000:100', '0:0'))}"
                        f" {root} && chmod {mode} {root}")
            self.add_path(st, root, "d")
        umask = "umask 0027 && " if self.chance(0.3) else ""
        self.emit("RUN " + umask + " && ".join(cmds))
        if self.chance(0.5):
            root = self.pick(roots)
            self.emit(f"WORKDIR {root}/{self.uniq('w')}/{self.pick(('x', 'y/z'))}")

    def mangle(self, item: str) -> str:
        """Version 3: the same instruction written differently (case, blanks, continuations
        with comments between them); heredoc bodies are left alone."""
        first, nl, rest = item.partition("\n")
        if not first or "<<" in first or first.startswith("#"):
            return item
        if self.chance(0.15):
            word, sp, tail = first.partition(" ")
            first = self.pick((word.lower(), word.capitalize())) + sp + tail
        if self.chance(0.1):
            first = self.pick(("  ", "\t", " ")) + first
        if self.chance(0.15) and first.count(" ") >= 2 and not first.lstrip().upper().startswith(
                ("ENV", "LABEL", "ARG")):
            spaces = [i for i, ch in enumerate(first) if ch == " "][1:]
            cut = self.pick(spaces)
            middle = self.pick((" \\\n", " \\\n    ", "\\\n# a comment\n   ", " \\\n\n  "))
            if "'" in first[:cut] or '"' in first[:cut]:
                middle = " \\\n"
            first = first[:cut] + middle + first[cut + 1:]
        if self.chance(0.1):
            first += self.pick(("  ", "\t"))
        return first + nl + rest

    def i_edge(self, st: Stage) -> None:
        """Version 3: expansion, quoting, path and config-field corners."""
        e = self.pick(st.env) if st.env else None
        c = self.r.randint(0, 15)
        if c == 0:
            k = self.uniq("E")
            inner = f"${{{e}:-in}}" if e else "in"
            self.emit(f"ENV {k}=${{UNSET_X:-{inner}}}")
            st.env.append(k)
        elif c == 1:
            k1, k2, k3 = self.uniq("E"), self.uniq("E"), self.uniq("E")
            ref = f"${e}" if e else "$HOME"
            self.emit(f"ENV {k1}='single {ref}' {k2}=\"double {ref}\" {k3}=\\$escaped")
            st.env += [k1, k2, k3]
        elif c == 2:
            ref = f"${e}" if e else "none"
            self.emit(f"LABEL \"q{self.counter}\"='b {ref}' d{self.counter}=\"e\\\"f {ref}\"")
            self.counter += 1
        elif c == 3:
            ref = f"${{{e}:+/set}}" if e else "${UNSET:+/never}"
            self.emit(f"WORKDIR {ref}/wd{self.counter}")
            self.counter += 1
        elif c == 4 and st.shell and st.user_root:
            ref = f"${e}" if e else "$HOME"
            self.emit(f"RUN echo \"{ref}\" '{ref}' \\{ref} > /tmp/q{self.counter}")
            self.counter += 1
        elif c == 5:
            self.emit(f'COPY ["{self.pick(self.ctx_files)}", "/json dest{self.counter}/"]')
            self.counter += 1
        elif c == 6:
            self.emit(f"COPY {self.pick(self.ctx_files)} /dd{self.counter}/./x/../y/")
            self.counter += 1
        elif c == 7:
            self.emit(f"COPY ./{self.pick(self.ctx_dirs)}/../{self.pick(self.ctx_files)} /up{self.counter}/")
            self.counter += 1
        elif c == 8:
            self.emit(f"ADD --chmod={self.pick(CHMODS)} {self.pick(self.ctx_files)} /")
        elif c == 9:
            self.emit(f"EXPOSE ${{PORT:-8080}}/tcp {self.pick(('53/udp', '1-3', '9999'))}")
        elif c == 10:
            self.emit(self.pick(("STOPSIGNAL ${SIG:-SIGINT}", "STOPSIGNAL SIGRTMIN+3")))
        elif c == 11:
            u = self.pick(("${U:-app}", "${U:-1000}:${G:-100}"))
            self.emit(f"USER {u}")
            st.user_root = False
        elif c == 12 and st.shell:
            self.emit('SHELL ["/bin/sh", "-ec"]')
            self.emit(self.pick(("ENTRYPOINT echo start", "CMD echo $HOME", "HEALTHCHECK CMD true")))
        elif c == 13:
            self.emit(self.pick(("HEALTHCHECK --timeout=3s --start-period=5s CMD wget x || exit 1",
                                 "HEALTHCHECK --interval=1m30s CMD [\"/bin/check\", \"-q\"]")))
        elif c == 14:
            a = self.uniq("A")
            self.emit(f"ARG {a}")
            self.emit(f"ENV {self.uniq('E')}=${{{a}:-unset}}${{{a}:+set}}")
            st.args.append(a)
        elif st.shell and st.user_root:
            self.emit(f"RUN set -- a b; echo \"$# $1 ${{2}}\" $$ > /dev/null; echo ok > /tmp/s{self.counter}")
            self.counter += 1


    # -- version 7
    def i_seven(self, st: Stage) -> None:
        """Version 7: constructs real Dockerfiles use that versions 1-6 never draw."""
        c = self.pick(tuple(range(19)) + (0, 2, 3, 4, 11, 11, 16))
        if c in (3, 4, 5, 6, 7, 9, 10, 18) and not st.shell:
            c = self.pick((0, 2, 12, 13, 14, 15))
        if c in (3, 4, 5, 6, 7, 9, 10, 11, 16, 18) and not st.user_root:
            self.emit("USER root")
            st.user_root = True
        getattr(self, f"s7_{c}")(st)

    def root(self, st: Stage) -> str:
        """One of ``ROOTS`` that no RUN of the stage turned into a file."""
        ok = [r for r in ROOTS if all(st.paths.get("/".join(r.split("/")[:i]), "d") == "d"
                                      for i in range(2, r.count("/") + 2))]
        return self.pick(ok or ("/fresh",))

    def owner(self, st: Stage) -> str:
        # names need an /etc/passwd: BuildKit fails on a scratch stage without one
        return self.pick(CHOWNS if st.shell else ("1000", "1000:100", "0:0"))

    def s7_0(self, st: Stage) -> None:  # COPY --link onto new or existing paths
        flags = "--link "
        if self.chance(0.4):
            flags += f"--chown={self.owner(st)} "
        files, dirs = self.known(st, "f"), self.known(st, "d")
        src = self.pick(self.ctx_files)
        if self.chance(0.35):
            flags += f"--chmod={self.pick(CHMODS)} "
            dest = self.existing_dir(st)
        elif files and self.chance(0.4):
            dest = self.pick(files)  # a file replaced by a file
        elif dirs and self.chance(0.5):
            dest = self.pick(dirs) + self.pick(("", "/"))  # into a directory, with or without /
        else:
            src = self.pick(self.ctx_dirs + self.ctx_files)
            dest = self.root(st) + "/" + self.uniq("k") + "/"
        if dest.rstrip("/") and src in self.ctx_files and dest.endswith("/"):
            self.add_path(st, dest.rstrip("/") + "/" + src.rsplit("/", 1)[-1], "f")
        self.emit(f"COPY {flags}{src} {dest}")

    def s7_1(self, st: Stage) -> None:  # COPY --link / --from through a symlinked destination
        if not st.shell:
            return self.s7_0(st)
        if not st.user_root:
            self.emit("USER root")
            st.user_root = True
        real, link = f"/opt/{self.uniq('lreal')}", f"/opt/{self.uniq('llnk')}"
        self.emit(f"RUN mkdir -p {real}/in && echo old > {real}/in/old"
                  f" && ln -s {self.pick((real, real[5:]))} {link}")
        self.add_path(st, real + "/in/old", "f")
        flags = "--link " if self.chance(0.7) else ""
        if self.chance(0.3):
            flags += f"--chown={self.owner(st)} "
        src = self.pick(self.ctx_files + self.ctx_dirs)
        self.emit(f"COPY {flags}{src} {link}/{self.pick(('', 'in/', 'new/'))}")

    def s7_2(self, st: Stage) -> None:  # ADD --chown/--chmod of archives and plain files
        flags = ""
        archive = self.archives and self.chance(0.5)
        # not --chown with an archive: BuildKit 0.13 kept the tar's owners, current chowns
        # (the corpus's CURRENT_BUILDKIT rule _UNPACK); the oracle cannot judge it
        if self.chance(0.7) and not archive:
            flags += f"--chown={self.owner(st)} "
        chmod = self.chance(0.5)
        if chmod:
            flags += f"--chmod={self.pick(CHMODS)} "
        if archive:
            src = self.pick(self.archives)
        else:
            src = " ".join(self.r.sample(self.ctx_files, k=min(2, len(self.ctx_files))))
        dest = self.existing_dir(st) if chmod else self.root(st) + "/" + self.uniq("ad") + "/"
        if self.chance(0.3):
            flags += "--link "
        self.emit(f"ADD {flags}{src} {dest}")
        if not chmod:
            self.add_path(st, dest.rstrip("/"), "d")

    def s7_3(self, st: Stage) -> None:  # RUN --mount=type=cache: its content is in no layer
        n = self.counter
        self.counter += 1
        target = self.pick(("/var/cache/fz", "/root/.cache", "cachedir", "/tmp/t/c",
                            self.root(st)))
        opts = [f"target={target}"]
        unique = self.chance(0.7)
        if unique:  # uid/gid/mode only apply when the cache is made: one cache per draw
            opts.append(f"id=fz{self.r.getrandbits(40):x}")
            if self.chance(0.5):
                opts.append(f"uid={self.pick(('1000', '0', '4242'))}")
            if self.chance(0.5):
                opts.append(f"gid={self.pick(('100', '1000', '0'))}")
            if self.chance(0.5):
                # no group/other write: the reference makes the dir under dockerd's umask 022
                opts.append(f"mode={self.pick(('0755', '0700', '1750', '0750', '2755', '4711'))}")
        if self.chance(0.4):
            opts.append(f"sharing={self.pick(('shared', 'private', 'locked'))}")
        self.r.shuffle(opts)
        t = target
        cmd = f"mkdir -p {t}/sub && echo c{n} > {t}/sub/f{n} && cp {t}/sub/f{n} /tmp/cache-out{n}"
        if unique:
            cmd += f" && stat -c '%u:%g %a' {t} > /tmp/cache-st{n} && ls -A {t} > /tmp/cache-ls{n}"
        if self.chance(0.3):
            self.emit(f"USER {self.pick(('1000', 'app'))}")
            st.user_root = False
            cmd = f"(echo u > {t}/u{n} || true) && id > /tmp/cache-id{n}"
        self.emit(f"RUN --mount=type=cache,{','.join(opts)} {cmd}")
        if not st.user_root:
            self.emit("USER root")
            st.user_root = True

    def s7_4(self, st: Stage) -> None:  # RUN --mount=type=bind,rw from a stage, image, context
        n = self.counter
        self.counter += 1
        others = [x for x in self.stages if any(k == "d" for k in x.paths.values())]
        c = self.r.randint(0, 2)
        if c == 0 and others:
            other = self.pick(others)
            src = self.pick(sorted(p for p, k in other.paths.items() if k == "d"))
            mount = f"from={other.name},source={src}"
        elif c == 1:
            mount = f"from={self.pick(BASES)},source={self.pick(('/etc', '/home/app', '/'))}"
        else:
            mount = f"source={self.pick(self.ctx_dirs)}"
        tgt = self.pick(("/mnt/rw", "/srv/rw", "rwdir"))
        ro = self.pick((",rw", ",readwrite", ",rw=true"))
        self.emit(f"RUN --mount=type=bind,{mount},target={tgt}{ro}"
                  f" echo w > {tgt}/new{n} && mkdir -p {tgt}/nd && ls -A {tgt} > /tmp/rw{n}")

    def s7_5(self, st: Stage) -> None:  # SHELL, then RUN/CMD/ENTRYPOINT shell forms
        shells = ('["/bin/sh", "-xc"]', '["/bin/ash", "-eo", "pipefail", "-c"]',
                  '["/bin/busybox", "sh", "-c"]', '["sh", "-c"]',
                  '["env", "SHELLVAR=1", "/bin/sh", "-c"]', '[ "/bin/sh" , "-euc" ]')
        self.emit(f"SHELL {self.pick(shells)}")
        n = self.counter
        self.counter += 1
        self.emit(f"RUN echo \"$0 ${{SHELLVAR:-none}}\" > /tmp/shell{n} && echo ok | cat >> /tmp/shell{n}")
        for _ in range(self.r.randint(1, 2)):
            self.emit(self.pick(("CMD echo from $0", "ENTRYPOINT exec env", "CMD [\"x\"]",
                                 "HEALTHCHECK CMD test -e /tmp", f"RUN <<EOF\necho hd{n} > /tmp/hd{n}\nEOF")))
        if self.chance(0.4):
            self.emit('SHELL ["/bin/sh", "-c"]')

    def s7_6(self, st: Stage) -> None:  # odd modes, empty files and dirs
        d = f"{self.root(st)}/{self.uniq('modes')}"
        self.emit(f"RUN mkdir -p {d}/sticky {d}/emptydir {d}/locked && : > {d}/empty"
                  f" && echo s > {d}/suid && echo g > {d}/sgid && echo z > {d}/zero && echo a > {d}/all"
                  f" && echo l > {d}/locked/in && chmod 4755 {d}/suid && chmod 2711 {d}/sgid"
                  f" && chmod 000 {d}/zero && chmod 0777 {d}/all && chmod 1750 {d}/sticky"
                  f" && chmod {self.pick(('3777', '7777', '6755', '2750'))} {d}/emptydir"
                  f" && chmod {self.pick(('000', '0311', '0500'))} {d}/locked")
        for name in ("suid", "sgid", "zero", "all", "empty"):
            self.add_path(st, f"{d}/{name}", "f")
        for name in ("sticky", "emptydir", "locked"):
            self.add_path(st, f"{d}/{name}", "d")
        if self.chance(0.4):
            self.emit(f"RUN chmod {self.pick(('0644', 'u-s', 'g+s', '1755'))} {d}/suid {d}/sgid"
                      f" && rmdir {d}/emptydir && mkdir {d}/emptydir")

    def s7_7(self, st: Stage) -> None:  # writes with odd modes in VOLUME paths
        v = f"/vol7{self.counter}"
        self.counter += 1
        made = self.chance(0.7)
        if made:
            self.emit(f"RUN mkdir -p {v}/keep && echo k > {v}/keep/k && chmod 2770 {v}/keep")
        self.emit(self.pick((f"VOLUME {v}", f'VOLUME ["{v}"]', f"VOLUME {v} /vol7other")))
        if made:
            self.emit(f"RUN echo w > {v}/w && chmod 4755 {v}/w && rm -f {v}/keep/k"
                      f" && mkdir -p {v}/e && chmod 1777 {v}/e")
            if self.chance(0.5):
                self.emit(f"COPY {self.flags(st)}{self.pick(self.ctx_files)} {v}/keep/")

    def s7_8(self, st: Stage) -> None:  # long names and deep paths
        a, b = "d" * self.pick((60, 99, 100)), "e" * self.pick((54, 155, 100))
        name = "n" * self.pick((99, 100, 101, 200, 255))
        if self.chance(0.5):
            rel = "long" + "x" * self.pick((95, 96, 97, 150, 251))
            self.ctx[rel] = b"long ctx name\n"
            self.ctx_files.append(rel)
            self.emit(f"COPY {self.flags(st)}{rel} /long{self.counter}/")
            self.counter += 1
            return
        if not st.shell:
            return
        if not st.user_root:
            self.emit("USER root")
            st.user_root = True
        d = f"/long{self.counter}/{a}/{b}"
        self.counter += 1
        self.emit(f"RUN mkdir -p {d} && echo x > {d}/{name} && ln -s {d}/{name} {d}/lnk"
                  f" && ln {d}/{name} {d}/hard")
        self.add_path(st, f"{d}/{name}", "f")
        self.add_path(st, f"{d}/hard", "f")

    def s7_9(self, st: Stage) -> None:  # a file becomes a dir (COPY into it) and a file again
        files = [f for f in self.known(st, "f") if f.count("/") >= 2]
        f = self.pick(files) if files else f"/flip{self.counter}/x"
        self.counter += 1
        self.forget(st, f)
        self.emit(f"RUN rm -rf {f} && mkdir -p {f} && chmod {self.pick(('2755', '700', '755'))} {f}")
        src = self.pick(self.ctx_files)
        self.emit(f"COPY {self.flags(st)}{src} {f}/")
        if self.chance(0.6):
            self.emit(f"RUN rm -rf {f} && printf back > {f} && chmod 600 {f}")
            self.add_path(st, f, "f")
        else:
            self.add_path(st, f + "/" + src.rsplit("/", 1)[-1], "f")

    def s7_10(self, st: Stage) -> None:  # WORKDIR through a symlink (or a dangling one)
        n = self.counter
        self.counter += 1
        real = f"/wreal{n}"
        target = self.pick((real, real[1:], f"/nowhere{n}"))
        self.emit(f"RUN mkdir -p {real} && ln -s {target} /wlink{n}")
        self.emit(f"WORKDIR /wlink{n}{self.pick(('', '/sub', '/a/b'))}")
        st.workdir = "?"
        self.emit(f"RUN touch here{n} && pwd > /tmp/pwd{n}")
        self.emit(f"COPY {self.flags(st)}{self.pick(self.ctx_files)} {self.pick(('.', './', 'cp/'))}")

    def s7_11(self, st: Stage) -> None:  # hard links across COPY --from
        mine = [(s, d) for s, d in self.hardlinked if s != st.name]
        if mine and self.chance(0.7):
            other, d = self.pick(mine)
            srcs = self.pick((d, f"{d}/", f"{d}/a {d}/b", f"{d}/*"))
            self.emit(f"COPY {self.flags(st)}--from={other} {srcs} /hlcopy{self.counter}/")
            self.counter += 1
            return
        if not st.shell:
            return
        d = f"/hl{self.counter}"
        self.counter += 1
        self.emit(f"RUN mkdir -p {d}/sub && echo a > {d}/a && ln {d}/a {d}/b && ln {d}/a {d}/sub/c"
                  f" && chmod {self.pick(('0600', '4755', '0644'))} {d}/a")
        for name in ("a", "b", "sub/c"):
            self.add_path(st, f"{d}/{name}", "f")
        self.hardlinked.append((st.name, d))

    def s7_12(self, st: Stage) -> None:  # global ARGs re-declared in a stage, then used
        if "G7" not in self.global_args:
            return self.i_arg(st)
        self.emit(self.pick(("ARG G7", "ARG G7=stage-default", "ARG G7=")))
        st.args.append("G7")
        self.emit(self.pick(("ENV FROM_G7=${G7:-unset}", "LABEL g7=\"$G7\"",
                             "WORKDIR /g7/${G7:-none}", "COPY f0.txt /g7copy/${G7}/"
                             if "f0.txt" in self.ctx_files else "LABEL g7b=${G7}-x",
                             # not M2=${M1}: 0.13 expanded every default first, current
                             # left to right (case fuzz-arg-multi-key-sequential)
                             "ARG M1=${G7:-m} M2=${G7}-b\nENV MM=$M2",
                             f"COPY --chown=${{U7:-1000}}:${{G7:+100}} {self.pick(self.ctx_files)}"
                             " /g7own/")))
        if st.shell and st.user_root:
            self.emit(f"RUN echo \"[$G7]\" > /tmp/g7-{self.uniq('g')}")

    def s7_13(self, st: Stage) -> None:  # config for FROM <stage> children to inherit
        n = self.counter
        self.counter += 1
        opts = [f"ENV INH{n}=v{n} PATH=/inh{n}:$PATH", f"LABEL inh{n}=\"l {n}\"",
                f"WORKDIR /inh{n}", f"EXPOSE {8000 + n}/udp", f"VOLUME /inhvol{n}",
                "HEALTHCHECK --interval=7s --retries=4 CMD [\"true\"]", "HEALTHCHECK NONE",
                "STOPSIGNAL SIGQUIT", 'ENTRYPOINT ["/bin/sh", "-c"]', "ENTRYPOINT []",
                f'CMD ["echo", "{n}"]', "CMD []", "ENV INHERIT=child"]
        if st.shell:
            opts += ["USER 1000:1000", "USER app", "USER root"]
        for line in self.r.sample(opts, k=self.r.randint(2, 5)):
            self.emit(line)
            if line.startswith("USER"):
                st.user_root = line == "USER root"
            if line.startswith("WORKDIR"):
                st.workdir = "?"

    def s7_14(self, st: Stage) -> None:  # empty files and dirs from the context
        n = self.counter
        self.counter += 1
        self.ctx[f"empty{n}"] = ("dir",)
        self.ctx[f"empty{n}/inner"] = ("dir",)
        self.ctx[f"zero{n}"] = b""
        self.ctx_files.append(f"zero{n}")
        srcs = self.pick((f"empty{n}", f"empty{n}/", f"zero{n}", f"empty{n} zero{n}"))
        self.emit(f"COPY {self.flags(st)}{srcs} /e{n}/")
        self.add_path(st, f"/e{n}", "d")

    def s7_15(self, st: Stage) -> None:  # hard links in the context
        n = self.counter
        self.counter += 1
        src = self.pick([f for f in self.ctx_files if "/" not in f] or self.ctx_files)
        self.specials.append(["hardlink", f"hl{n}", src])
        self.ctx_files.append(f"hl{n}")
        srcs = self.pick((f"{src} hl{n}", f"hl{n}", "."))
        self.emit(f"COPY {self.flags(st)}{srcs} /ctxhl{n}/")
        self.add_path(st, f"/ctxhl{n}", "d")


    def s7_16(self, st: Stage) -> None:  # COPY --from through symlinked sources
        mine = [(s, d) for s, d in self.symlinked if s != st.name]
        if mine and self.chance(0.75):
            other, d = self.pick(mine)
            srcs = self.pick((f"{d}/dl", f"{d}/dl/", f"{d}/dl/in", f"{d}/fl", f"{d}/*",
                              f"{d}/d*", f"{d}/dl/in/r {d}/fl", f"{d}/abs", f"{d}/dangle"))
            dest = self.pick((f"/slcopy{self.counter}/", f"/slcopy{self.counter}"))
            self.counter += 1
            self.emit(f"COPY {self.flags(st)}--from={other} {srcs} {dest}")
            return
        if not st.shell:
            return
        d = f"/sl{self.counter}"
        self.counter += 1
        self.emit(f"RUN mkdir -p {d}/real/in && echo r > {d}/real/in/r && ln -s real {d}/dl"
                  f" && ln -s real/in/r {d}/fl && ln -s {d}/real {d}/abs && ln -s gone {d}/dangle")
        self.add_path(st, f"{d}/real/in/r", "f")
        self.symlinked.append((st.name, d))

    def s7_17(self, st: Stage) -> None:  # symlinks in the context: to a dir, absolute, outward
        n = self.counter
        self.counter += 1
        target = self.pick((self.pick(self.ctx_dirs), "/" + self.pick(self.ctx_dirs),
                            self.pick(self.ctx_dirs) + "/"))
        self.ctx[f"cl{n}"] = ("link", target)
        how = self.r.randint(0, 2)
        if how == 0:
            self.emit(f"COPY {self.flags(st)}cl{n} /ctxlink{n}/")
        elif how == 1:
            self.emit(f"COPY {self.flags(st)}cl{n}/ /ctxlink{n}/")
        elif st.shell and st.user_root:
            # no ls -l: the context's mtimes differ between the two builders' transfers
            self.emit(f"RUN --mount=type=bind,source=cl{n},target=/mnt/cl stat -c '%n %a %u:%g %s'"
                      f" /mnt/cl /mnt/cl/* > /tmp/cl{n} 2>&1 || echo none > /tmp/cl{n}")
        else:
            self.emit(f"COPY {self.flags(st)}cl{n} /ctxlink{n}")

    def s7_18(self, st: Stage) -> None:  # COPY (--link) onto an existing or dangling symlink
        n = self.counter
        self.counter += 1
        kind = self.pick(("file", "dir", "dangle"))
        target = {"file": f"/ol{n}/t.txt", "dir": f"/ol{n}/td", "dangle": f"/ol{n}/none"}[kind]
        made = {"file": f"echo t > {target}", "dir": f"mkdir {target}", "dangle": "true"}[kind]
        self.emit(f"RUN mkdir -p /ol{n} && {made} && ln -s {self.pick((target, target[len(f'/ol{n}/'):]))}"
                  f" /ol{n}/lnk")
        flags = self.pick(("--link ", "", "--link --chmod=0600 "))
        src = self.pick(self.ctx_files)
        self.emit(f"COPY {flags}{src} /ol{n}/lnk{self.pick(('', '/'))}" if kind == "dir"
                  else f"COPY {flags}{src} /ol{n}/lnk")


def generate(seed: int, version: int = 7) -> Generated:
    """The Dockerfile, context and args of ``seed`` (deterministic for a ``version``)."""
    for attempt in range(20):
        gen = Gen(random.Random(seed * 1000 + attempt), version)
        out = gen.generate()
        if _plausible(out):
            return out
    return out


def _plausible(g: Generated) -> bool:
    # ONBUILD RUN triggers need a shell in the child: refuse scratch-based children of a
    # stage with triggers (cheaper than tracking it while generating).
    return "ONBUILD RUN" not in g.dockerfile or "scratch" not in g.dockerfile


def write_case(g: Generated, case_dir: Path) -> None:
    if case_dir.exists():
        shutil.rmtree(case_dir)
    ctx = case_dir / "ctx"
    ctx.mkdir(parents=True)
    (case_dir / "Dockerfile").write_text(g.dockerfile)
    if g.args:
        (case_dir / "args.json").write_text(json.dumps(g.args, indent=2) + "\n")
    for rel, value in sorted(g.ctx.items()):
        path = ctx / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(value, bytes):
            path.write_bytes(value)
            if rel.endswith(".sh"):
                path.chmod(0o755)
        elif value[0] == "dir":
            path.mkdir(exist_ok=True)
        else:
            path.symlink_to(value[1])


def _dedupe_args(match: re.Match[str]) -> str:
    """RUN's ``|N k=v`` list as current BuildKit writes it: a re-declared ARG once, at its
    first position, with its last value (dockerfile 1.12, e2be8f7; 0.13 repeated it)."""
    pairs: dict[str, str] = {}
    for word in match.group(1).split():
        key, _, value = word.partition("=")
        pairs[key] = value
    return f"RUN |{len(pairs)} " + "".join(f"{k}={v} " for k, v in pairs.items())


def masked(text: str, stage_bases: bool) -> str:
    """``text`` with the history lines 0.13 writes differently from current BuildKit masked.
    With ``stage_bases`` (a FROM names a stage) RUN's ``|N k=v`` prefix goes too: since
    dockerfile 1.10 (c7c2f0e97) a stage inherits its base stage's ARGs, 0.13 did not."""
    out = []
    for line in text.splitlines():
        line = re.sub(r"RUN \|\d+((?: [A-Za-z_][A-Za-z0-9_]*=\S*)+) ", _dedupe_args, line)
        if stage_bases:
            line = re.sub(r"RUN \|\d+(?: [A-Za-z_][A-Za-z0-9_]*=\S*)+ ", "RUN ", line)
        body = line.strip()
        for tag in ("[empty] ", "[layer] "):
            if body.startswith(tag) and body[len(tag):].startswith(MASKED):
                line = "  " + tag + body[len(tag):].split(" ", 1)[0] + " <masked>"
        out.append(line)
    return "\n".join(out) + "\n"


def unshare_maps(theirs: str, ours: str) -> str:
    """``theirs`` with BuildKit 0.13's shared maps undone: its ``clone`` of a base stage's image
    copied Labels, ExposedPorts and Volumes by reference, so what one stage FROM a stage added
    showed in its siblings and its base; current BuildKit copies them (dockerfile 1.24,
    fd3654d2b, moby/buildkit#6713; case ``fuzz-sibling-stage-maps``). Keys only 0.13 has are
    dropped when ocibuild's keys are a subset of BuildKit's."""
    def config(text: str) -> tuple[dict[str, Any], int, int]:
        lines = text.split("\n")
        if "config:" not in lines or "history:" not in lines:
            raise ValueError
        start, end = lines.index("config:") + 1, lines.index("history:")
        return json.loads("\n".join(lines[start:end])), start, end

    try:
        mine, _, _ = config(ours)
        cfg, start, end = config(theirs)
    except ValueError:
        return theirs
    inner, my_inner = cfg.get("config", {}), mine.get("config", {})
    for key in ("Labels", "ExposedPorts", "Volumes"):
        have, want = inner.get(key) or {}, my_inner.get(key) or {}
        if have != want and all(have.get(k, object()) == v for k, v in want.items()):
            if want:
                inner[key] = want
            else:
                inner.pop(key, None)
    lines = theirs.split("\n")
    text = json.dumps(cfg, indent=2, sort_keys=True, ensure_ascii=False).splitlines()
    return "\n".join(lines[:start] + ["  " + line for line in text] + lines[end:])


def layer_paths(work: Path) -> list[Path]:
    """The layer tars of what a builder left in ``work``: ``saved/`` (BuildKit's ``docker
    save``, unpacked by ``record``) or ``layout/`` (ocibuild's OCI layout), oldest first."""
    saved = work / "saved" / "manifest.json"
    if saved.exists():
        return [work / "saved" / p for p in json.loads(saved.read_text())[0]["Layers"]]
    layout = work / "layout"
    index = json.loads((layout / "index.json").read_text())
    blob = layout / "blobs" / "sha256"
    manifest = json.loads((blob / index["manifests"][0]["digest"].split(":")[1]).read_text())
    return [blob / layer["digest"].split(":")[1] for layer in manifest["layers"]]


def layer_views(paths: list[Path]) -> list[list[str]]:
    """Each layer's own entries (hard links and owners as written), one line each, sorted;
    whiteouts by name only (``docker save`` rewrites them: 0600, an opaque one the dir's mode).
    A directory entry whose type, mode and owner are those of the tree below it is left out:
    both builders write parent directories whose mtime alone changed (BuildKit also those of
    the mount stubs it removes, see ``fs-run-stub-mtimes``)."""
    from ocibuild.testing.flatten import _decompress, _norm, apply_layer

    below: dict[str, Any] = {}
    views = []
    for path in paths:
        lines = []
        with open(path, "rb") as f, tarfile.open(fileobj=_decompress(f), mode="r|") as tar:
            for m in tar:
                name = _norm(m.name)
                head = f"{m.mode & 0o7777:04o} {m.uid}:{m.gid} {name}"
                if m.isdir():
                    old = below.get(name)
                    if old is not None and (old.kind, old.mode, old.uid, old.gid) == (
                            "d", m.mode & 0o7777, m.uid, m.gid):
                        continue
                    lines.append("d " + head)
                elif m.isreg() and name.rsplit("/", 1)[-1].startswith(".wh."):
                    lines.append(f"w {name}")
                elif m.isreg():
                    data = tar.extractfile(m)
                    digest = hashlib.sha256(data.read() if data else b"").hexdigest()[:16]
                    lines.append(f"f {head} {m.size} {digest}")
                elif m.issym():
                    lines.append(f"l {head} -> {m.linkname}")
                elif m.islnk():
                    lines.append(f"h {head} => {_norm(m.linkname)}")
                else:
                    lines.append(f"{m.type.decode(errors='replace')} {head}")
        with open(path, "rb") as f:
            apply_layer(below, f)
        views.append(sorted(lines))
    return views


def layer_diff(theirs: list[list[str]], ours: list[list[str]]) -> str:
    """The layers whose views differ, side by side ('' when all are the same)."""
    out = []
    for i in range(max(len(theirs), len(ours))):
        a = theirs[i] if i < len(theirs) else ["(none)"]
        b = ours[i] if i < len(ours) else ["(none)"]
        if a != b:
            out.append(f"layer {i}: buildkit")
            out.extend("  " + line for line in a)
            out.append(f"layer {i}: ocibuild")
            out.extend("  " + line for line in b)
    return "\n".join(out) + ("\n" if out else "")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--out", default="/tmp/fuzz-out")
    parser.add_argument("--print", action="store_true", dest="print_only")
    parser.add_argument("--gen", type=int, default=7, help="generator version (1 to 7)")
    parser.add_argument("--no-layers", action="store_true",
                        help="compare the flattened images only, not each layer's entries")
    opts = parser.parse_args(argv)
    if opts.print_only:
        for seed in range(opts.seed, opts.seed + opts.count):
            g = generate(seed, opts.gen)
            print(f"### seed {seed} {json.dumps(g.args)}\n{g.dockerfile}")
        return 0

    import os

    import conformance
    import record

    from ocibuild.testing.registry import start_registry

    docker = os.environ.get("ORACLE_DOCKER")
    if not docker:
        print("run: eval \"$(../shared/tools/buildkit-oracle.sh)\" first", file=sys.stderr)
        return 2
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    bad = 0
    server = start_registry()
    try:
        with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
            cases = Path(tmp) / "cases"
            cases.mkdir()
            conformance.CASES = record.CASES = cases  # the helpers read cases from here
            store = Path(tmp) / "store"
            conformance.seed(server.host, store)
            base = conformance.base_tree(Path(tmp))
            for seed in range(opts.seed, opts.seed + opts.count):
                started = time.monotonic()
                case = f"seed-{seed}"
                g = generate(seed, opts.gen)
                write_case(g, cases / case)
                work = Path(tmp) / "work" / case
                (work / "bk").mkdir(parents=True)
                (work / "oci").mkdir()
                theirs = ours = ""
                views: list[list[list[str]]] = []
                for _attempt in range(3):  # another user of the oracle may be copying buildx
                    try:
                        bk = record.build_buildkit(docker, case, server.host, work / "bk")
                        theirs = conformance.render(bk, base).replace(server.host,
                                                                      "localhost:5000")
                        if not opts.no_layers:
                            views = [layer_views(layer_paths(work / "bk"))]
                    except RuntimeError as exc:
                        theirs = "BUILDKIT FAILED\n" + str(exc)[-1500:]
                    except subprocess.CalledProcessError as exc:  # docker save: no layers
                        theirs = "BUILDKIT FAILED\nexport: " + str(exc)
                    if "text file busy" not in theirs:
                        break
                    time.sleep(2)
                try:
                    mine, _ = conformance.build_ocibuild(case, server.host, store, work / "oci")
                    ours = conformance.render(mine, base).replace(server.host, "localhost:5000")
                    if views:
                        views.append(layer_views(layer_paths(work / "oci")))
                except Exception as exc:  # noqa: BLE001 -- any failure is a finding
                    ours = "OCIBUILD FAILED\n" + "".join(
                        traceback.format_exception_only(exc))[-1500:]
                shutil.rmtree(work, ignore_errors=True)
                both_failed = theirs.startswith("BUILDKIT FAILED") and ours.startswith("OCIBUILD")
                if g.stage_bases:
                    theirs = unshare_maps(theirs, ours)
                same = masked(theirs, g.stage_bases) == masked(ours, g.stage_bases)
                same = same or both_failed
                layers = layer_diff(*views) if same and len(views) == 2 else ""
                status = "same" if same else "DIFF"
                if layers:
                    status, same = "LAYERS", False
                if theirs.startswith("BUILDKIT FAILED"):
                    status = "bkfail" if both_failed else "BKFAIL-ONLY"
                if theirs.startswith("BUILDKIT FAILED\nexport:"):
                    status, same = "skip", True  # docker save cannot export a layerless image
                print(f"{status:11} seed {seed} ({time.monotonic() - started:.1f}s)", flush=True)
                if not same or theirs.startswith("BUILDKIT FAILED"):
                    bad += not same
                    dest = out / case
                    if dest.exists():
                        shutil.rmtree(dest)
                    shutil.copytree(cases / case, dest, symlinks=True)
                    (dest / "buildkit.txt").write_text(theirs)
                    (dest / "ocibuild.txt").write_text(ours)
                    if layers:
                        (dest / "layers.txt").write_text(layers)
                shutil.rmtree(cases / case)
    finally:
        server.stop()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
