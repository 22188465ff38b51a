"""The YAML event sources: libyaml through PyYAML's ``CParser``, or PyYAML's pure-Python parser.

Both feed the same builder with the same events, so the choice changes speed, never results.
In front of them, when it was built, ``_cbuild`` runs that builder's loop compiled over libyaml's
own C events (``compiled``); whatever it does not take it hands back, and the text goes the
``libyaml`` way, so the results are still those of the builder.
Parser errors become the library's own: reader errors (forbidden characters, bad bytes) are
``BadEncoding``, everything else ``MalformedYaml`` with the 1-based line and column.
"""

from __future__ import annotations

import re
import string
from typing import Any, Literal

import yaml
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.scanner import Scanner, ScannerError
from yaml.tokens import DirectiveToken, ScalarToken, TagToken

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
_BLANKZ = "\0 \t" + _BREAKS
_QUOTED_WORD_ENDS = '"' + _BLANKZ
_WORD = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_"
_TAG_URI = _WORD + ";/?:@&=+$.%!~*'()"  # libyaml's URI characters; a verbatim tag adds ",[]"

# PyYAML's pure scanner quotes what it met in the row after "found" (a character, an escape), and
# its parser a tag handle (any length: it can carry a value); libyaml's messages quote nothing. A
# message names the fault, and the line and column name the place (as the loader's other errors).
_QUOTED = r"""(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""
_SCANNER_FOUND = re.compile(rf"\b(found(?: character| unknown escape character)?) {_QUOTED}")
_TAG_HANDLE = re.compile(rf"\b(tag handle) {_QUOTED}")


def _row_text_left_out(exc: yaml.MarkedYAMLError, message: str) -> str:
    """``message`` without the row text PyYAML quoted in it (the parser's token names are kept)."""
    if isinstance(exc, ScannerError):
        message = _SCANNER_FOUND.sub(
            lambda found: "found another character" if found[1] == "found" else found[1], message
        )
    return _TAG_HANDLE.sub(r"\1", message)


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
        # libyaml skips a BOM at the start of any line (as one column of indentation), and tabs
        # wherever a simple key cannot start (after an indicator) or inside flow collections;
        # PyYAML only skips spaces.
        found = False
        while not found:
            if self.column == 0 and self.peek() == "\ufeff":
                self.forward()
                self.column += 1  # libyaml counts the BOM as a column (SKIP); PyYAML's forward does not
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

    def scan_plain(self) -> ScalarToken:
        # libyaml's plain scalar (scanner.c, yaml_parser_scan_plain_scalar): inside a flow
        # collection it ends at one of ``,[]{}`` but not at ``?`` (PyYAML ends it there too), and a
        # ``:`` followed by one of ``,?[]{}`` is an error (PyYAML ends the scalar before it, so
        # ``{a:[b]}`` would load on this path and fail on libyaml's).
        chunks: list[str] = []
        start_mark = self.get_mark()
        end_mark = start_mark
        indent = self.indent + 1
        spaces: list[str] | None = []
        while True:
            length = 0
            if self.peek() == "#":
                break
            while (ch := self.peek(length)) not in _BLANKZ:
                following = self.peek(length + 1)
                if self.flow_level and ch == ":" and following in ",?[]{}":
                    self.forward(length)
                    raise ScannerError(
                        "while scanning a plain scalar", start_mark, "found unexpected ':'", self.get_mark()
                    )
                if (ch == ":" and following in _BLANKZ) or (self.flow_level and ch in ",[]{}"):
                    break
                length += 1
            if length == 0:
                break
            self.allow_simple_key = False
            chunks.extend(spaces or ())
            chunks.append(self.prefix(length))
            self.forward(length)
            end_mark = self.get_mark()
            spaces = self.scan_plain_spaces(indent, start_mark)
            if not spaces or self.peek() == "#" or (not self.flow_level and self.column < indent):
                break
        return ScalarToken("".join(chunks), True, start_mark, end_mark)

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

    def scan_flow_scalar_non_spaces(self, double: bool, start_mark: Any) -> list[str]:
        # libyaml refuses an escape of a surrogate (``\ud800``, each half of a pair too) or of a
        # code past U+10FFFF (scanner.c, yaml_parser_scan_flow_scalar), so Psych never loads one;
        # PyYAML built the surrogate with chr(), text that no UTF-8 (nor BSON) holds, and met
        # chr()'s ValueError past U+10FFFF. The words up to the next blank are checked first.
        if double:
            self._escaped_codes_checked(start_mark)
        chunks: list[str] = super().scan_flow_scalar_non_spaces(double, start_mark)
        return chunks

    def _escaped_codes_checked(self, start_mark: Any) -> None:
        length = 0
        while (ch := self.peek(length)) not in _QUOTED_WORD_ENDS:
            if ch != "\\":
                length += 1
                continue
            size = self.ESCAPE_CODES.get(self.peek(length + 1), 0)
            digits = self.prefix(length + 2 + size)[length + 2 :]
            if size and len(digits) == size and all(d in string.hexdigits for d in digits):
                code = int(digits, 16)
                if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
                    self.forward(length + 2)  # where libyaml stops: after the escape's letter
                    raise ScannerError(
                        "while parsing a quoted scalar",
                        start_mark,
                        "found invalid Unicode character escape code",
                        self.get_mark(),
                    )
                length += size
            escaped = self.peek(length + 1)
            length += 2  # an escaped quote or blank does not end the word
            if escaped in _BREAKS:  # nor does an escaped line break: PyYAML reads on past the blanks after it
                while self.peek(length) in " \t" + _BREAKS:
                    length += 1

    def scan_block_scalar_indicators(self, start_mark: Any) -> tuple[bool | None, int | None]:
        # libyaml takes any blank after ``|``/``>`` and their indicators, a tab too (scanner.c,
        # yaml_parser_scan_block_scalar); PyYAML refuses a tab there: ``|\t`` would fail here only.
        chomping: bool | None = None
        increment: int | None = None
        if self.peek() in "+-":
            chomping = self.peek() == "+"
            self.forward()
            if self.peek() in "0123456789":
                increment = self._indentation_indicator(start_mark)
        elif self.peek() in "0123456789":
            increment = self._indentation_indicator(start_mark)
            if self.peek() in "+-":
                chomping = self.peek() == "+"
                self.forward()
        if self.peek() not in _BLANKZ:
            raise ScannerError(
                "while scanning a block scalar",
                start_mark,
                "expected chomping or indentation indicators, but found another character",
                self.get_mark(),
            )
        return chomping, increment

    def _indentation_indicator(self, start_mark: Any) -> int:
        if self.peek() == "0":
            raise ScannerError(
                "while scanning a block scalar",
                start_mark,
                "expected indentation indicator in the range 1-9, but found 0",
                self.get_mark(),
            )
        increment = int(self.peek())
        self.forward()
        return increment

    def scan_block_scalar_ignored_line(self, start_mark: Any) -> None:
        while self.peek() in " \t":  # libyaml's blanks; PyYAML skips spaces only
            self.forward()
        super().scan_block_scalar_ignored_line(start_mark)

    def scan_directive(self) -> DirectiveToken:
        # libyaml refuses a directive other than %YAML and %TAG, even after the first document
        # ("found unknown directive name", scanner.c); PyYAML skips it, so ``a: 1\n%x`` loaded here.
        length = 1
        while self.peek(length) in _WORD:
            length += 1
        name = self.prefix(length)[1:]
        if name and name not in ("YAML", "TAG") and self.peek(length) in _BLANKZ:
            start_mark = self.get_mark()
            self.forward(length)
            raise ScannerError(
                "while scanning a directive", start_mark, "found unknown directive name", self.get_mark()
            )
        return super().scan_directive()

    def fetch_stream_end(self) -> None:
        # libyaml ends the last line before the stream end, so a simple key that must be one (a
        # flow collection or scalar at its mapping's column, ``<<: \n[``) and is still open goes
        # stale there: "could not find expected ':'". PyYAML skips that check and hands the
        # builder more events first, which could then refuse them for another reason.
        if self.column != 0:
            self.line += 1
            self.column = 0
        self.stale_possible_simple_keys()
        super().fetch_stream_end()

    def scan_tag(self) -> TagToken:
        # libyaml's reading of a tag (scanner.c, yaml_parser_scan_tag): ``!word!`` is a handle only
        # when the second ``!`` follows the word at once, so ``!:!b`` is the local tag ``!:!b``
        # (PyYAML looks for any later ``!`` and errs); ``,[]`` belong to verbatim tags only; and a
        # tab, or a ``,`` inside a flow collection, may end a tag.
        start_mark = self.get_mark()
        handle: str | None
        if self.peek(1) == "<":
            self.forward(2)
            handle, suffix = None, self._tag_uri(start_mark, None, _TAG_URI + ",[]")
            if self.peek() != ">":
                raise ScannerError(
                    "while scanning a tag", start_mark, "did not find the expected '>'", self.get_mark()
                )
            self.forward()
        else:
            length = 1
            while self.peek(length) in _WORD:
                length += 1
            if self.peek(length) == "!":
                handle = self.prefix(length + 1)
                self.forward(length + 1)
                suffix = self._tag_uri(start_mark, None, _TAG_URI)
            else:
                head = self.prefix(length)[1:]
                self.forward(length)
                handle, suffix = "!", self._tag_uri(start_mark, head, _TAG_URI)
                if not suffix:  # the non-specific tag ``!``
                    handle, suffix = None, "!"
        end = self.peek()
        if end not in _BLANKZ and not (self.flow_level and end == ","):
            raise ScannerError(
                "while scanning a tag",
                start_mark,
                "did not find expected whitespace or line break",
                self.get_mark(),
            )
        return TagToken((handle, suffix), start_mark, self.get_mark())

    def _tag_uri(self, start_mark: Any, head: str | None, allowed: str) -> str:
        """``head`` (the word already read) and the URI characters after it, %-escapes decoded."""
        chunks = [head or ""]
        read = 0
        length = 0
        while self.peek(length) in allowed:
            if self.peek(length) == "%":
                chunks.append(self.prefix(length))
                self.forward(length)
                length = 0
                chunks.append(self.scan_uri_escapes("tag", start_mark))
            else:
                length += 1
            read += 1
        chunks.append(self.prefix(length))
        self.forward(length)
        if head is None and not read:
            raise ScannerError(
                "while parsing a tag", start_mark, "did not find expected tag URI", self.get_mark()
            )
        return "".join(chunks)

    def _line_break(self) -> str:
        return str(self.scan_line_break())  # type: ignore[no-untyped-call]

    def _at_document_marker(self) -> bool:
        return self.prefix(3) in ("---", "...") and self.peek(3) in "\0 \t" + _BREAKS


def available_backends() -> tuple[Backend, ...]:
    """The backends this interpreter can run, fastest first."""
    found: tuple[Backend, ...] = ("libyaml", "python") if CParser is not None else ("python",)
    return ("compiled", *found) if _cbuild is not None and CParser is not None else found


def utf8_checked(text: str) -> bytes:
    """``text`` as UTF-8; ``BadEncoding`` for a lone surrogate, which no UTF-8 (and no YAML) holds."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadEncoding(f"text that cannot be UTF-8: a lone surrogate at offset {exc.start}") from None


def parse(text: str, limits: LoaderLimits, backend: Backend) -> tuple[bool, Any]:
    """The first YAML document of ``text`` built into the value model (see ``builder.build``).

    ``BadEncoding`` for a lone surrogate, before any parser sees the text: the compiled builder
    declines such a text (it encodes the text to UTF-8 for libyaml), so the check is made only on
    the other paths, and only for text that is not ASCII.
    """
    chosen: Backend = backend
    compiled = _cbuild is not None and CParser is not None
    if backend == "compiled" or (backend == "auto" and compiled):
        if compiled:
            built: Any = _cbuild.build_text(text, limits)  # (found, value), or DECLINED
            if built is not _cbuild.DECLINED:
                found, value = built  # unpacked, not cast(): no call on every row
                return found, value
        chosen = "libyaml"  # what it does not take: the same builder over PyYAML's events
    if not text.isascii():
        utf8_checked(text)
    if backend == "compiled" and not compiled:
        raise ValueError("the compiled loader was not built on this machine")
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
        # Its str() names the character's code; the offset and the reason say enough.
        raise BadEncoding(f"not YAML-readable text: {exc.reason} (offset {exc.position})") from None
    except yaml.MarkedYAMLError as exc:
        if "maximum nesting" in (exc.problem or ""):  # libyaml's own cap (1000) met first
            raise LimitExceeded("nesting depth", limits.max_depth, None) from None
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(part for part in (exc.context, exc.problem) if part) or type(exc).__name__
        message = _row_text_left_out(exc, message)
        if mark is None:
            raise MalformedYaml(message) from None
        raise MalformedYaml(message, mark.line + 1, mark.column + 1) from None
    except yaml.YAMLError as exc:
        # No mark to name a place, and its text may quote the row: the kind of fault alone.
        raise MalformedYaml(f"the parser failed ({type(exc).__name__})") from None
    finally:
        if source is not None:
            source.dispose()
