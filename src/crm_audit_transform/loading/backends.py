"""The two YAML event sources: libyaml through PyYAML's ``CParser``, or PyYAML's pure-Python parser.

Both feed the same builder with the same events, so the choice changes speed, never results.
Parser errors become the library's own: reader errors (forbidden characters, bad bytes) are
``BadEncoding``, everything else ``MalformedYaml`` with the 1-based line and column.
"""

from __future__ import annotations

from typing import Any, Literal

import yaml
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.scanner import Scanner

from ..errors import BadEncoding, MalformedYaml
from .builder import build
from .limits import LoaderLimits

try:
    from yaml.cyaml import CParser
except ImportError:  # PyYAML built without libyaml
    CParser = None

Backend = Literal["auto", "libyaml", "python"]
"""``auto`` takes libyaml when PyYAML was built with it, else the pure-Python parser."""


class _PythonParser(Reader, Scanner, Parser):
    def __init__(self, text: str) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)


def available_backends() -> tuple[Backend, ...]:
    """The backends this interpreter can run, fastest first."""
    return ("libyaml", "python") if CParser is not None else ("python",)


def parse(text: str, limits: LoaderLimits, backend: Backend) -> tuple[bool, Any]:
    """The first YAML document of ``text`` built into the value model (see ``builder.build``)."""
    if backend == "python" or (backend == "auto" and CParser is None):
        source: Any = _PythonParser(text)
    elif backend in ("libyaml", "auto"):
        if CParser is None:
            raise ValueError("this PyYAML was built without libyaml")
        source = CParser(text)
    else:
        raise ValueError(f"unknown YAML backend {backend!r}")
    try:
        return build(source, limits)
    except yaml.reader.ReaderError as exc:
        raise BadEncoding(f"not YAML-readable text: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(part for part in (exc.context, exc.problem) if part) or type(exc).__name__
        if mark is None:
            raise MalformedYaml(message) from None
        raise MalformedYaml(message, mark.line + 1, mark.column + 1) from None
    except yaml.YAMLError as exc:
        raise MalformedYaml(str(exc)) from None
    finally:
        source.dispose()
