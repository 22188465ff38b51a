"""The YAML event sources: libyaml through PyYAML's ``CParser``, or PyYAML's pure-Python parser.

Both feed the same builder with the same events, so the choice changes speed, never results.
In front of them, when it was built, ``_cbuild`` runs that builder's loop compiled over libyaml's
own C events (``compiled``); whatever it does not take it hands back, and the text goes the
``libyaml`` way, so the results are still those of the builder.
Parser errors become the library's own: reader errors (forbidden characters, bad bytes) are
``BadEncoding``, everything else ``MalformedYaml`` with the 1-based line and column.
"""

from __future__ import annotations

from typing import Any, Literal, cast

import yaml
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.scanner import Scanner, ScannerError

from ..errors import BadEncoding, LimitExceeded, MalformedYaml
from ._builder import build
from ._limits import LoaderLimits

try:
    import yaml.cyaml as _cyaml
except ImportError:  # PyYAML built without libyaml
    _cyaml = None  # type: ignore[assignment]
CParser: Any = getattr(_cyaml, "CParser", None)
try:
    from . import _cbuild  # optional: built by setup.py when it can
except ImportError:  # no compiler, no libyaml header, or skipped on purpose: the pure path
    _cbuild = None  # type: ignore[assignment]

_BREAKS = "\r\n\x85\u2028\u2029"

Backend = Literal["auto", "compiled", "libyaml", "python"]
"""``auto`` takes the compiled builder, then libyaml when PyYAML was built with it, else the
pure-Python parser; ``compiled`` is the compiled builder with the ``libyaml`` path behind it."""


class _PythonParser(Reader, Scanner, Parser):
    """PyYAML's pure parser, with libyaml's whitespace rules where the two differ (Psych is libyaml)."""

    def __init__(self, text: str) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)

    def scan_to_next_token(self) -> None:
        # libyaml skips a BOM at the start of any line, and tabs wherever a simple key cannot
        # start (after an indicator) or inside flow collections; PyYAML only skips spaces.
        found = False
        while not found:
            if self.column == 0 and self.peek() == "\ufeff":
                self.forward()
            while self.peek() == " " or (
                self.peek() == "\t" and (self.flow_level or not self.allow_simple_key)
            ):
                self.forward()
            if self.peek() == "#":
                while self.peek() not in "\0\r\n\x85\u2028\u2029":
                    self.forward()
            if self._line_break():
                if not self.flow_level:
                    self.allow_simple_key = True
            else:
                found = True

    def scan_plain_spaces(self, indent: int, start_mark: Any) -> list[str] | None:
        # libyaml takes tabs as blanks between and after the words of a plain scalar (erring only
        # when one sits left of the indentation); PyYAML stops the scalar at the first tab.
        chunks: list[str] = []
        length = 0
        while self.peek(length) in " \t":
            length += 1
        whitespaces = self.prefix(length)
        self.forward(length)
        if self.peek() not in _BREAKS:
            if whitespaces:
                chunks.append(whitespaces)
            return chunks
        line_break = self._line_break()
        self.allow_simple_key = True
        if self._at_document_marker():
            return None
        breaks: list[str] = []
        while self.peek() in " \t" + _BREAKS:
            if self.peek() == "\t" and self.column < indent:
                raise ScannerError(
                    "while scanning a plain scalar",
                    start_mark,
                    "found a tab character that violates indentation",
                    self.get_mark(),
                )
            if self.peek() in " \t":
                self.forward()
                continue
            breaks.append(self._line_break())
            if self._at_document_marker():
                return None
        if line_break != "\n":
            chunks.append(line_break)
        elif not breaks:
            chunks.append(" ")
        chunks.extend(breaks)
        return chunks

    def _line_break(self) -> str:
        return str(self.scan_line_break())  # type: ignore[no-untyped-call]

    def _at_document_marker(self) -> bool:
        return self.prefix(3) in ("---", "...") and self.peek(3) in "\0 \t" + _BREAKS


def available_backends() -> tuple[Backend, ...]:
    """The backends this interpreter can run, fastest first."""
    found: tuple[Backend, ...] = ("libyaml", "python") if CParser is not None else ("python",)
    return ("compiled", *found) if _cbuild is not None and CParser is not None else found


def parse(text: str, limits: LoaderLimits, backend: Backend) -> tuple[bool, Any]:
    """The first YAML document of ``text`` built into the value model (see ``builder.build``)."""
    chosen: Backend = backend
    if backend == "compiled" or (backend == "auto" and _cbuild is not None and CParser is not None):
        if _cbuild is None or CParser is None:
            raise ValueError("the compiled loader was not built on this machine")
        built = _cbuild.build_text(text, limits)
        if built is not _cbuild.DECLINED:
            return cast(tuple[bool, Any], built)
        chosen = "libyaml"  # what it does not take: the same builder over PyYAML's events
    if chosen == "python" or (chosen == "auto" and CParser is None):
        factory: Any = _PythonParser
    elif chosen in ("libyaml", "auto"):
        if CParser is None:
            raise ValueError("this PyYAML was built without libyaml")
        factory = CParser
    else:
        raise ValueError(f"unknown YAML backend {backend!r}")
    source = None
    try:
        source = factory(text)  # the pure reader already checks characters here
        return build(source, limits)
    except yaml.reader.ReaderError as exc:
        raise BadEncoding(f"not YAML-readable text: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        if "maximum nesting" in (exc.problem or ""):  # libyaml's own cap (1000) met first
            raise LimitExceeded("nesting depth", limits.max_depth, None) from None
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(part for part in (exc.context, exc.problem) if part) or type(exc).__name__
        if mark is None:
            raise MalformedYaml(message) from None
        raise MalformedYaml(message, mark.line + 1, mark.column + 1) from None
    except yaml.YAMLError as exc:
        raise MalformedYaml(str(exc)) from None
    finally:
        if source is not None:
            source.dispose()
