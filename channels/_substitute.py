"""``string.Template.safe_substitute`` with the template parsed once.

``safe_substitute`` runs the template's regular expression over the whole text and calls a Python
function for every ``$`` it finds, on every rendering: for the built-in email (about thirty
placeholders in 3 KB of HTML) that was a third of the cost of a send through the outbox. Here a template
text is cut once into ``(literal, name, raw)`` pieces (cached by text), and a rendering joins the
literals with ``mapping[name]``. Same results as ``safe_substitute``, by construction and by test: a
name the mapping lacks (``KeyError``) stays as written, ``$$`` becomes ``$``, a ``$`` that starts no
valid placeholder stays.
"""
from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from string import Template
from typing import Any

__all__ = ["substitute"]

_Pieces = tuple[tuple[tuple[str, str, str], ...], str]


@lru_cache(maxsize=1024)
def _parse(text: str) -> _Pieces:
    """``((literal, name, raw), ...), tail``: each placeholder with the literal text before it."""
    pieces: list[tuple[str, str, str]] = []
    literal: list[str] = []
    at = 0
    for mo in Template.pattern.finditer(text):
        literal.append(text[at:mo.start()])
        at = mo.end()
        name = mo.group("named") or mo.group("braced")
        if name is not None:
            pieces.append(("".join(literal), name, mo.group()))
            literal = []
        elif mo.group("escaped") is not None:
            literal.append(Template.delimiter)
        else:  # invalid: kept as written
            literal.append(mo.group())
    literal.append(text[at:])
    return tuple(pieces), "".join(literal)


def substitute(template: Template | str, mapping: Mapping[str, Any]) -> str:
    """``Template(text).safe_substitute(mapping)``, parsing ``text`` only the first time."""
    pieces, tail = _parse(template if type(template) is str else template.template)
    out: list[str] = []
    append = out.append
    for literal, name, raw in pieces:
        append(literal)
        try:
            append(str(mapping[name]))
        except KeyError:
            append(raw)
    append(tail)
    return "".join(out)
