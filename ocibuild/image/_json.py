"""JSON text the way Go's ``encoding/json`` writes it, so our manifests and configs match the
bytes BuildKit produces for the same content.

Go differs from Python's ``json`` in ways that change digests: it escapes ``<``, ``>`` and ``&``
(HTML safety), writes control characters as ``\\u00XX`` except ``\\n \\r \\t``, escapes U+2028
and U+2029, and keeps other non-ASCII as raw UTF-8. Object keys are written in the order given
(callers order them: Go struct order, or sorted for Go maps).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ocibuild.errors import ContentError

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ESCAPES.update({c: f"\\u{ord(c):04x}" for c in "<>&\u2028\u2029"})
_ESCAPES.update({chr(i): f"\\u{i:04x}" for i in range(0x20) if chr(i) not in _ESCAPES})
_TRANS = str.maketrans(_ESCAPES)


def _string(s: str) -> str:
    return '"' + s.translate(_TRANS) + '"'


def _encode(value: Any, indent: str | None, level: int, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("JSON cannot encode NaN or infinity")
        out.append(str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value))
    elif isinstance(value, Mapping):
        if not value:
            out.append("{}")
            return
        out.append("{")
        for i, (k, v) in enumerate(value.items()):
            if i:
                out.append(",")
            _newline(indent, level + 1, out)
            out.append(_string(str(k)))
            out.append(": " if indent is not None else ":")
            _encode(v, indent, level + 1, out)
        _newline(indent, level, out)
        out.append("}")
    elif isinstance(value, Sequence):
        if not value:
            out.append("[]")
            return
        out.append("[")
        for i, v in enumerate(value):
            if i:
                out.append(",")
            _newline(indent, level + 1, out)
            _encode(v, indent, level + 1, out)
        _newline(indent, level, out)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _newline(indent: str | None, level: int, out: list[str]) -> None:
    if indent is not None:
        out.append("\n" + indent * level)


def go_json(value: Any, *, indent: str | None = None) -> bytes:
    """Encode like Go's ``json.Marshal`` (``indent=None``) or ``json.MarshalIndent(v, "", indent)``."""
    out: list[str] = []
    _encode(value, indent, 0, out)
    return "".join(out).encode("utf-8")


def load_object(raw: bytes, what: str) -> dict[str, Any]:
    """Parse ``raw`` as a JSON object; ContentError naming ``what`` when it is not one."""
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContentError(f"{what}: invalid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ContentError(f"{what}: want a JSON object, got {type(value).__name__}")
    return value
