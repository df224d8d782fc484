"""Registry credentials from the files docker and podman keep, and ``login`` writing them.

Lookup order for a host (first hit wins), as podman/skopeo do:
1. ``$REGISTRY_AUTH_FILE``, else ``${XDG_RUNTIME_DIR}/containers/auth.json``;
2. ``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``): ``credHelpers[host]``,
   then ``auths[host]`` (base64 ``auth`` or ``username``/``password``, ``identitytoken``), then
   ``credsStore``.
Keys match ``host``, ``https://host``, ``http://host`` and ``.../v1/`` forms; Docker Hub is
stored under ``https://index.docker.io/v1/``.

``Credential.__repr__`` hides secrets; no message here ever contains one.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ocibuild.errors import AuthError

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_NAMES = {"docker.io", "index.docker.io", "registry-1.docker.io"}


@dataclass(frozen=True)
class Credential:
    """A username and password, or an OAuth2 refresh token (``identity_token``)."""

    username: str = field(default="")
    password: str = field(default="", repr=False)
    identity_token: str | None = field(default=None, repr=False)


class CredentialStore(Protocol):
    def get(self, host: str) -> Credential | None: ...


@dataclass(frozen=True)
class StaticCredentials:
    """Fixed credentials per host (tests, API callers)."""

    by_host: Mapping[str, Credential]

    def get(self, host: str) -> Credential | None:
        return self.by_host.get(host)


def _candidates(host: str) -> list[str]:
    if host in _HUB_NAMES:
        return [DOCKER_HUB_KEY, "docker.io", "index.docker.io", "https://index.docker.io/v1",
                "registry-1.docker.io"]
    return [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/",
            f"https://{host}/v2/", f"http://{host}/v1/"]


def docker_config_dir() -> Path:
    env = os.environ.get("DOCKER_CONFIG")
    return Path(env) if env else Path.home() / ".docker"


def _auth_file() -> Path | None:
    env = os.environ.get("REGISTRY_AUTH_FILE")
    if env:
        return Path(env)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "containers" / "auth.json" if runtime else None


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise AuthError(f"read credentials {path}: {exc.__class__.__name__}") from exc
    return data if isinstance(data, dict) else {}


def _from_auth_entry(entry: Mapping[str, Any], where: str) -> Credential | None:
    identity = entry.get("identitytoken") or None
    user, password = entry.get("username", ""), entry.get("password", "")
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError) as exc:
            raise AuthError(f"{where}: invalid base64 in \"auth\"") from exc
    if not (user or password or identity):
        return None
    return Credential(user, password, identity)


def _run_helper(name: str, host: str) -> Credential | None:
    program = f"docker-credential-{name}"
    try:
        proc = subprocess.run(
            [program, "get"], input=host.encode(), capture_output=True, timeout=30, check=False
        )
    except FileNotFoundError as exc:
        raise AuthError(f"credential helper {program} not found in PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise AuthError(f"credential helper {program} timed out") from exc
    if proc.returncode != 0:
        out = proc.stdout.decode(errors="replace").strip()
        if "credentials not found" in out.lower():
            return None
        # Helpers print only a short reason on failure, never the secret.
        raise AuthError(f"credential helper {program} get failed: {out[:200]}")
    try:
        data = json.loads(proc.stdout)
    except ValueError as exc:
        raise AuthError(f"credential helper {program}: invalid JSON output") from exc
    user, secret = data.get("Username", ""), data.get("Secret", "")
    if user == "<token>":
        return Credential("", "", secret)
    return Credential(user, secret)


@dataclass(frozen=True)
class DockerCredentials:
    """Credentials from the containers auth file and the docker config (see module doc)."""

    auth_file: Path | None = None
    config_dir: Path | None = None

    @classmethod
    def from_environment(cls) -> DockerCredentials:
        return cls(_auth_file(), docker_config_dir())

    def get(self, host: str) -> Credential | None:
        keys = _candidates(host)
        if self.auth_file is not None:
            auths = _load(self.auth_file).get("auths") or {}
            for key in keys:
                if key in auths:
                    cred = _from_auth_entry(auths[key], str(self.auth_file))
                    if cred is not None:
                        return cred
        if self.config_dir is None:
            return None
        config = _load(self.config_dir / "config.json")
        helpers = config.get("credHelpers") or {}
        for key in keys:
            if key in helpers:
                return _run_helper(helpers[key], keys[0] if host in _HUB_NAMES else host)
        auths = config.get("auths") or {}
        for key in keys:
            if key in auths:
                cred = _from_auth_entry(auths[key], str(self.config_dir / "config.json"))
                if cred is not None:
                    return cred
        if config.get("credsStore"):
            return _run_helper(config["credsStore"], keys[0] if host in _HUB_NAMES else host)
        return None


def save_login(host: str, cred: Credential, config_dir: Path | None = None) -> Path:
    """Stores ``cred`` for ``host`` like ``docker login``: through the configured helper
    (``credHelpers[host]`` or ``credsStore``), else base64 ``auth`` (or ``identitytoken``) in
    ``config.json``. The file is replaced atomically with mode 0600; other entries are kept.
    Returns the config path."""
    config_dir = config_dir or docker_config_dir()
    path = config_dir / "config.json"
    config = _load(path)
    key = DOCKER_HUB_KEY if host in _HUB_NAMES else host
    helper = (config.get("credHelpers") or {}).get(key) or config.get("credsStore")
    if helper:
        payload = {"ServerURL": key, "Username": cred.username or "<token>",
                   "Secret": cred.identity_token or cred.password}
        program = f"docker-credential-{helper}"
        try:
            proc = subprocess.run([program, "store"], input=json.dumps(payload).encode(),
                                  capture_output=True, timeout=30, check=False)
        except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
            raise AuthError(f"credential helper {program} store failed") from exc
        if proc.returncode != 0:
            raise AuthError(f"credential helper {program} store failed: "
                            f"{proc.stdout.decode(errors='replace').strip()[:200]}")
        entry: dict[str, str] = {}
    elif cred.identity_token:
        entry = {"auth": base64.b64encode(f"{cred.username}:".encode()).decode(),
                 "identitytoken": cred.identity_token}
    else:
        entry = {"auth": base64.b64encode(f"{cred.username}:{cred.password}".encode()).decode()}
    auths = config.setdefault("auths", {})
    auths[key] = entry
    config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=config_dir, prefix=".config.json.")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(config, out, indent="\t")
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path
