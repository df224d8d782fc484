"""``--chmod`` values: octal (``0755``, up to ``07777``) or symbolic (``u=rwX,go=rX``).

BuildKit parses an octal value first; anything else goes through a port of BSD ``setmode``
(tonistiigi/dchapes-mode) with umask 0, so a clause without ``ugoa`` applies to all. An octal
mode replaces the permission and special bits of every copied file and directory; a symbolic
one is applied to each file's own mode. BSD rules differ from GNU chmod(1) in corners kept on
purpose: ``X`` acts only with ``+`` (``u=rwX`` is ``u=rw``), ``o+t`` is ignored, and ``=``
clears setuid/setgid on directories too.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass

from ocibuild.errors import UsageError

_CLAUSE = re.compile(r"([ugoa]*)((?:[-+=](?:[ugo]|[rwxXst]*))+)")
_OP = re.compile(r"([-+=])([ugo]|[rwxXst]*)")
_STANDARD = 0o6777  # rwx for all plus setuid and setgid; the sticky bit only when named
_WHO = {"u": 0o4700, "g": 0o2070, "o": 0o0007, "a": _STANDARD}
_SHIFT = {"u": 6, "g": 3, "o": 0}



@dataclass(frozen=True)
class _Step:
    """One compiled step: ``+``/``-`` bits, ``X`` (execute bits, only for directories and
    already executable files), or ``copy`` the ``source`` class's bits into ``classes``."""

    kind: str
    bits: int = 0
    source: str = ""
    op: str = ""
    classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModeSpec:
    """A parsed ``--chmod``. ``octal`` is set for numeric values; ``symbolic`` otherwise."""

    text: str
    octal: int | None = None

    @classmethod
    def parse(cls, text: str) -> ModeSpec:
        """Raise ``UsageError`` with BuildKit's message for values that are neither."""
        bad = UsageError(
            f"invalid chmod parameter: '{text}'. it should be octal string and between 0 and 07777"
        )
        if text and all(c in "01234567" for c in text):
            value = int(text, 8)
            if value > 0o7777:
                raise bad
            return cls(text, value)
        if text[:1].isdigit():
            raise bad
        for clause in text.split(","):
            if not _CLAUSE.fullmatch(clause):
                raise UsageError(f"invalid --chmod value {text!r}: bad symbolic mode {clause!r}")
        return cls(text)

    def apply(self, mode: int) -> int:
        """The new permission+special bits (``0o7777``) for a file whose ``st_mode`` is
        ``mode``, with BSD ``setmode`` rules as BuildKit's parser has them: ``X`` only acts
        with ``+``, ``=`` clears the named classes (all but sticky without ``ugoa``)."""
        if self.octal is not None:
            return self.octal
        original = stat.S_IMODE(mode)
        new = original
        for step in _compile_symbolic(self.text):
            if step.kind == "+":
                new |= step.bits
            elif step.kind == "-":
                new &= ~step.bits
            elif step.kind == "X":
                if original & 0o111 or stat.S_ISDIR(mode):
                    new |= step.bits
            else:
                value = (new >> _SHIFT[step.source]) & 0o7
                for cls in step.classes:
                    shift = _SHIFT[cls]
                    if step.op in "-=":
                        new &= ~((0o7 if step.op == "=" else value) << shift)
                    if step.op in "+=":
                        new |= value << shift
        return new & 0o7777

    @property
    def dir_mode(self) -> int | None:
        """The mode for directories COPY creates (current BuildKit: the octal --chmod)."""
        return None if self.octal is None else self.octal & 0o777



def _compile_symbolic(text: str) -> list[_Step]:
    """The steps of a symbolic mode, as BSD ``setmode`` (umask 0) builds them."""
    cmds: list[_Step] = []

    def add(op: str, who: int, arg: int) -> None:
        if op == "=":
            cmds.append(_Step("-", who or _STANDARD))
            op = "+"
        cmds.append(_Step(op, (who & arg) if who else arg))

    for clause in text.split(","):
        m = _CLAUSE.fullmatch(clause)
        assert m is not None
        who_text = m.group(1)
        who = 0
        for w in who_text:
            who |= _WHO[w]
        for op, what in _OP.findall(m.group(2)):
            who &= ~0o1000
            perm = perm_x = 0
            equal_done = False
            if what in ("u", "g", "o"):
                classes = [c for c, bit in (("u", 0o400), ("g", 0o040), ("o", 0o004))
                           if not who or who & bit]
                cmds.append(_Step("copy", source=what, op=op, classes=tuple(classes)))
                continue
            for ch in what:
                if ch == "r":
                    perm |= 0o444
                elif ch == "w":
                    perm |= 0o222
                elif ch == "x":
                    perm |= 0o111
                elif ch == "X":
                    if op == "+":
                        perm_x = 0o111
                elif ch in "st" and (not who or who & ~0o007):
                    if ch == "s":
                        perm |= 0o6000
                    else:
                        who |= 0o1000
                        perm |= 0o1000
            if perm or (op == "=" and not equal_done):
                add(op, who, perm)
            if perm_x:
                add("X", who, perm_x)
    return cmds
