"""Config-only instructions applied to an image config, and history texts, as BuildKit has them.

Everything here is pure: functions take the image config JSON (a ``dict`` shaped like the OCI
image config: ``architecture``, ``os``, ``config`` {``Env``, ``Cmd``, ...}, ``history``) and return
a new one; nothing is mutated in place. The texts follow BuildKit's ``dockerfile2llb``
(``commitToHistory``): Go's ``%q``/``%v`` renderings of slices and structs, ``# buildkit`` only on
steps that produce a layer through LLB (RUN, COPY, ADD), ``empty_layer`` on config-only steps,
no history entry at all for ONBUILD.
"""

from __future__ import annotations

import copy
import posixpath
from collections.abc import Sequence
from typing import Any

from ocibuild.dockerfile import model as df
from ocibuild.dockerfile.expand import go_quote
from ocibuild.errors import ExecutionError
from ocibuild.image.config import CONFIG_FIELDS, HISTORY_FIELDS

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHELL = ("/bin/sh", "-c")
HISTORY_COMMENT = "buildkit.dockerfile.v0"

JSON = dict[str, Any]

# --- Go renderings ---------------------------------------------------------------------------

def go_quote_list(items: Sequence[str]) -> str:
    """Go's ``fmt.Sprintf("%q", []string{...})``: ``["a" "b"]``."""
    return "[" + " ".join(go_quote(s) for s in items) + "]"


def go_list(items: Sequence[str]) -> str:
    """Go's ``%v`` of a ``[]string``: ``[a b]``."""
    return "[" + " ".join(items) + "]"


def go_duration(ns: int) -> str:
    """Go's ``time.Duration.String``: ``0s``, ``1.5s``, ``1m30s``, ``2h0m0s``, ``500ms``."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _frac(ns, size) + unit
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    secs = _frac(rest, 10**9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}"
    if minutes:
        return f"{sign}{minutes}m{secs}"
    return sign + secs


def _frac(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{str(frac).rjust(digits, '0').rstrip('0')}"


# --- config helpers ---------------------------------------------------------------------------


def empty_config(os_name: str, architecture: str, variant: str = "") -> JSON:
    """BuildKit's ``emptyImage``: what ``FROM scratch`` starts from."""
    cfg: JSON = {"architecture": architecture, "os": os_name}
    if variant:
        cfg["variant"] = variant
    cfg["config"] = {"Env": [f"PATH={DEFAULT_PATH}"], "WorkingDir": "/"}
    cfg["rootfs"] = {"type": "layers", "diff_ids": []}
    return cfg


#: The fields of BuildKit's image type (``dockerspec.DockerOCIImage``: OCI's image with
#: Docker's Healthcheck/OnBuild/Shell in ``config``), top level and in a history entry. The
#: frontend reads a base's config into that type, so any other field (classic Docker's
#: ``container_config``, ``docker_version``, ``config.Hostname``, ``config.Image``, ...) is not
#: in the image it writes; the ones marked ``omitempty`` are left out when empty.
IMAGE_FIELDS = ("created", "author", "architecture", "os", "os.version", "os.features",
                "variant", "config", "rootfs", "history")
_IMAGE_OMIT_EMPTY = ("author", "os.version", "os.features", "variant")
HEALTHCHECK_FIELDS = ("Test", "Interval", "Timeout", "StartPeriod", "StartInterval", "Retries")


def start_stage(base: JSON) -> JSON:
    """A stage's starting config from its base's, as BuildKit's frontend reads it: only the
    fields its image type has (``IMAGE_FIELDS``, ``CONFIG_FIELDS``), ONBUILD triggers do not carry
    over, the ``created`` time is dropped, and ``PATH`` is always set."""
    cfg = {k: copy.deepcopy(v) for k, v in base.items()
           if k in IMAGE_FIELDS and k != "created" and (v or k not in _IMAGE_OMIT_EMPTY)}
    if isinstance(cfg.get("history"), list):
        cfg["history"] = [{k: v for k, v in h.items() if k in HISTORY_FIELDS and v}
                          if isinstance(h, dict) else h for h in cfg["history"]]
    inner = cfg.get("config")
    inner = cfg["config"] = ({k: v for k, v in inner.items() if k in CONFIG_FIELDS}
                             if isinstance(inner, dict) else {})
    inner.pop("OnBuild", None)
    check = inner.get("Healthcheck")
    if isinstance(check, dict):  # Go's struct: its fields in order, the empty ones left out
        inner["Healthcheck"] = {k: check[k] for k in HEALTHCHECK_FIELDS if check.get(k)}
    for key in ("ExposedPorts", "Volumes"):  # sets: Go's map[string]struct{}
        if isinstance(inner.get(key), dict):
            inner[key] = {k: {} for k in inner[key]}
    env = list(inner.get("Env") or [])
    if not any(e.split("=", 1)[0] == "PATH" for e in env) and cfg.get("os", "linux") != "windows":
        env.append(f"PATH={DEFAULT_PATH}")
    inner["Env"] = env
    omit_empty(inner)
    return cfg


#: The ``config`` fields BuildKit's image config type marks ``omitempty`` (OCI's
#: ``ImageConfig`` plus Docker's Healthcheck/OnBuild/Shell): Go's encoder leaves a field out
#: when it is empty (``[]``, ``{}``, ``""``, ``false``, null), so ``ENTRYPOINT []`` and an
#: inherited ``"Cmd": null`` leave no key at all.
OMIT_EMPTY = ("User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir",
              "Labels", "StopSignal", "ArgsEscaped", "Healthcheck", "OnBuild", "Shell")


def omit_empty(inner: JSON) -> JSON:
    """Drop the empty ``omitempty`` fields of an image config's ``config`` object (in place:
    called on the caller's own copy) and return it."""
    for key in OMIT_EMPTY:
        if key in inner and not inner[key]:
            del inner[key]
    return inner


def add_env(env: Sequence[str], key: str, value: str) -> list[str]:
    out = list(env)
    for i, item in enumerate(out):
        if item.split("=", 1)[0] == key:
            out[i] = f"{key}={value}"
            return out
    out.append(f"{key}={value}")
    return out


def env_map(cfg: JSON) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in (cfg.get("config") or {}).get("Env") or []:
        k, _, v = item.partition("=")
        out[k] = v
    return out


def shell_of(cfg: JSON) -> tuple[str, ...]:
    return tuple((cfg.get("config") or {}).get("Shell") or DEFAULT_SHELL)


def with_shell(cfg: JSON, command: df.Command) -> list[str]:
    """The argv of a shell- or exec-form command under the stage's SHELL."""
    match command:
        case df.ShellForm(text=text):
            return [*shell_of(cfg), text]
        case df.ExecForm(args=args):
            return list(args)
    raise AssertionError(command)


def normalize_workdir(current: str, requested: str) -> str:
    """BuildKit's ``NormalizeWorkdir`` on Linux: an absolute path is kept as written (even
    ``/root/``), a relative one is joined to the current workdir (and cleaned, like Go's
    ``path.Join``); empty keeps the current one."""
    base = current or "/"
    if not base.startswith("/"):
        base = posixpath.normpath("/" + base)
    if requested == "":
        return base
    if requested.startswith("/"):
        return requested
    joined = posixpath.normpath(posixpath.join(base, requested))
    return "/" + joined.lstrip("/") if joined.startswith("//") else joined


def history_entry(created_by: str, *, empty_layer: bool, created: str | None) -> JSON:
    h: JSON = {}
    if created:
        h["created"] = created
    h["created_by"] = created_by
    h["comment"] = HISTORY_COMMENT
    if empty_layer:
        h["empty_layer"] = True
    return h


def run_created_by(argv: Sequence[str], history_args: Sequence[tuple[str, str]]) -> str:
    """``RUN |2 A=1 B=2 /bin/sh -c make # buildkit`` (BuildKit's ``runCommandString``)."""
    parts = [f"{k}={v}" for k, v in history_args]
    if parts:
        parts.insert(0, f"|{len(parts)}")
    return "RUN " + " ".join([*parts, *argv]) + " # buildkit"


def copy_created_by(instr: df.CopyBase, sources: Sequence[str], dest: str,
                    chown: str | None, chmod: str | None, parents: bool) -> str:
    """``COPY [--parents] [--chown=..] [--chmod=..] SRC... [<<EOF...] DEST # buildkit``."""
    words = ["ADD" if isinstance(instr, df.Add) else "COPY"]
    if parents:
        words.append("--parents")
    if chown:
        words.append(f"--chown={chown}")
    if chmod:
        words.append(f"--chmod={chmod}")
    heredoc_names = {h.name for h in instr.heredocs}
    words.extend(s for s in sources if s not in heredoc_names)
    words.extend(f"<<{h.name}" for h in instr.heredocs)
    words.append(dest)
    return " ".join(words) + " # buildkit"


# --- ports ------------------------------------------------------------------------------------


def parse_ports(words: Sequence[str]) -> list[str]:
    """EXPOSE words -> ``port/proto`` strings (ranges expanded, host parts dropped)."""
    out: list[str] = []
    for raw in (w for word in words for w in word.split()):
        spec = raw
        # [ip:][hostPort:]containerPort[/proto]; IPv6 ips are bracketed
        if spec.startswith("["):
            spec = spec[spec.index("]") + 1:].lstrip(":")
        container = spec.rsplit(":", 1)[-1]
        port, _, proto = container.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise ExecutionError(f'invalid port: "{raw}": invalid proto: {proto}')
        start_s, dash, end_s = port.partition("-")
        try:
            start = int(start_s)
            end = int(end_s) if dash and end_s != start_s else start
        except ValueError as exc:
            raise ExecutionError(f"invalid containerPort: {port}") from exc
        if not (0 <= start <= end <= 65535):
            raise ExecutionError(f"invalid containerPort: {port}")
        out.extend(f"{p}/{proto}" for p in range(start, end + 1))
    return out


# --- the config-only instructions -------------------------------------------------------------


def apply_config(cfg: JSON, instr: df.Instruction, *, cmd_set: bool,
                 created: str | None) -> tuple[JSON, JSON | None]:
    """Apply one expanded config-only instruction; returns the new config and the history entry
    to append (None for ONBUILD, which BuildKit does not record in history).

    ``cmd_set`` says whether a CMD came earlier in this stage (a new ENTRYPOINT then keeps it;
    otherwise it clears an inherited CMD). WORKDIR here only edits ``WorkingDir``; creating the
    directory (and its layer) is the stage loop's job.
    """
    out = copy.deepcopy(cfg)
    c: JSON = out.setdefault("config", {})
    text: str
    match instr:
        case df.Env(pairs=pairs):
            env = list(c.get("Env") or [])
            for kv in pairs:
                env = add_env(env, kv.key, kv.value)
            c["Env"] = env
            text = "ENV" + "".join(f" {kv.key}={kv.value}" for kv in pairs)
        case df.Label(pairs=pairs):
            labels = dict(c.get("Labels") or {})
            for kv in pairs:
                labels[kv.key] = kv.value
            c["Labels"] = labels
            text = "LABEL" + "".join(f" {kv.key}={kv.value}" for kv in pairs)
        case df.Expose(ports=ports):
            parsed = parse_ports(ports)
            exposed = dict(c.get("ExposedPorts") or {})
            for p in parsed:
                exposed[p] = {}
            c["ExposedPorts"] = exposed
            text = f"EXPOSE {go_list(parsed)}"
        case df.Volume(paths=paths):
            volumes = dict(c.get("Volumes") or {})
            for p in paths:
                if not p:
                    raise ExecutionError("VOLUME specified can not be an empty string",
                                         location=instr.location)
                volumes[p] = {}
            c["Volumes"] = volumes
            text = f"VOLUME {go_list(paths)}"
        case df.User(user=user):
            c["User"] = user
            text = f"USER {user}"
        case df.Workdir(path=path):
            wd = normalize_workdir(c.get("WorkingDir", ""), path)
            c["WorkingDir"] = wd
            text = f"WORKDIR {wd}"
        case df.Cmd(command=command):
            argv = with_shell(out, command)
            c["Cmd"] = argv  # ``CMD []`` leaves none: dropped by omit_empty below
            c["ArgsEscaped"] = True
            text = f"CMD {go_quote_list(argv)}"
        case df.Entrypoint(command=command):
            argv = with_shell(out, command)
            c["Entrypoint"] = argv  # ``ENTRYPOINT []``: dropped by omit_empty below
            if not cmd_set:
                c.pop("Cmd", None)
            text = f"ENTRYPOINT {go_quote_list(argv)}"
        case df.Shell(args=args):
            c["Shell"] = list(args)
            text = f"SHELL {go_list(args)}"
        case df.Stopsignal(signal=sig):
            c["StopSignal"] = sig
            text = f"STOPSIGNAL {sig}"
        case df.Healthcheck():
            hc: JSON = {"Test": list(instr.test)}
            for key, value in (("Interval", instr.interval), ("Timeout", instr.timeout),
                               ("StartPeriod", instr.start_period),
                               ("StartInterval", instr.start_interval),
                               ("Retries", instr.retries)):
                if value:
                    hc[key] = value
            c["Healthcheck"] = hc
            text = (f"HEALTHCHECK {{Test:{go_list(instr.test)} Interval:{go_duration(instr.interval)}"
                    f" Timeout:{go_duration(instr.timeout)}"
                    f" StartPeriod:{go_duration(instr.start_period)}"
                    f" StartInterval:{go_duration(instr.start_interval)} Retries:{instr.retries}}}")
        case df.Onbuild(expression=expression):
            c["OnBuild"] = [*(c.get("OnBuild") or []), expression]
            return out, None
        case df.Maintainer(name=name):
            out["author"] = name
            text = f"MAINTAINER {name}"
        case df.Arg(args=decls):
            text = "ARG " + " ".join(d.name if d.default is None else f"{d.name}={d.default}"
                                     for d in decls)
        case _:
            raise ExecutionError(f"{instr.keyword} is not a config instruction",
                                 location=instr.location)
    omit_empty(c)
    return out, history_entry(text, empty_layer=True, created=created)
