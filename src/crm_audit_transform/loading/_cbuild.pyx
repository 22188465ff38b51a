# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The builder of ``_builder.build`` compiled over libyaml's C events: no Python event objects.

PyYAML's ``CParser`` turns every libyaml event into a Python ``Event`` with two ``Mark`` objects,
and the pure builder then interprets it; here the same loop reads ``yaml_event_t`` structs
directly. Every rule stays in one place: scalars, tags and hashes are read by the very helpers the
pure builder calls (``_psych_scalars.tokenize``, ``_builder._scalar``, ``_builder._put``,
``_builder._finish``, ``_ruby_objects.RubyKeys``), with the same shortcuts.

It never raises for bad input: anything it does not take — a parser error, a limit met, a scalar
Ruby cannot read, a rule that raises — returns ``DECLINED``, and the caller runs the pure path on
the same text, which gives the exact error (or value) the library defines. So this module can
only be faster, never different, as long as its success path mirrors ``build``.
"""

from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.string cimport memchr

import datetime as _datetime_module

from . import _builder as _b
from . import _psych_scalars as _ps
from . import _ruby_objects as _ro


cdef extern from "yaml.h":
    ctypedef unsigned char yaml_char_t

    ctypedef enum yaml_event_type_t:
        YAML_NO_EVENT
        YAML_STREAM_START_EVENT
        YAML_STREAM_END_EVENT
        YAML_DOCUMENT_START_EVENT
        YAML_DOCUMENT_END_EVENT
        YAML_ALIAS_EVENT
        YAML_SCALAR_EVENT
        YAML_SEQUENCE_START_EVENT
        YAML_SEQUENCE_END_EVENT
        YAML_MAPPING_START_EVENT
        YAML_MAPPING_END_EVENT

    ctypedef enum yaml_encoding_t:
        YAML_ANY_ENCODING
        YAML_UTF8_ENCODING

    ctypedef struct yaml_event_alias_data_t:
        yaml_char_t *anchor
    ctypedef struct yaml_event_scalar_data_t:
        yaml_char_t *anchor
        yaml_char_t *tag
        yaml_char_t *value
        size_t length
        int plain_implicit
        int quoted_implicit
    ctypedef struct yaml_event_sequence_start_data_t:
        yaml_char_t *anchor
        yaml_char_t *tag
    ctypedef struct yaml_event_mapping_start_data_t:
        yaml_char_t *anchor
        yaml_char_t *tag
    ctypedef union yaml_event_data_t:
        yaml_event_alias_data_t alias
        yaml_event_scalar_data_t scalar
        yaml_event_sequence_start_data_t sequence_start
        yaml_event_mapping_start_data_t mapping_start
    ctypedef struct yaml_event_t:
        yaml_event_type_t type
        yaml_event_data_t data

    ctypedef struct yaml_parser_t:
        int error

    int yaml_parser_initialize(yaml_parser_t *parser)
    void yaml_parser_delete(yaml_parser_t *parser)
    void yaml_parser_set_input_string(yaml_parser_t *parser, const unsigned char *input, size_t size)
    void yaml_parser_set_encoding(yaml_parser_t *parser, yaml_encoding_t encoding)
    int yaml_parser_parse(yaml_parser_t *parser, yaml_event_t *event) nogil
    void yaml_event_delete(yaml_event_t *event)


DECLINED = object()
"""Returned for anything this builder does not take; the caller then runs the pure path."""

cdef object _NO_KEY = _b._NO_KEY
cdef object _OPEN = _b._OPEN
cdef object _put = _b._put
cdef object _finish = _b._finish
cdef object _scalar = _b._scalar
cdef object _collection_kind = _b._collection_kind
cdef object _check_collection_slot = _b._check_collection_slot
cdef object _tokenize = _ps.tokenize
cdef object _Symbol = _ps.Symbol
cdef object _datetime = _datetime_module.datetime
cdef object _date = _datetime_module.date
cdef object _UTC = _ps._UTC
cdef object _RubyKeys = _ro.RubyKeys
cdef object _YAML_STR = _ro.YAML_STR
cdef int _SEQ = _ro.SEQ
cdef int _HASH = _ro.HASH


cdef class _Frame:
    """``_builder._Frame`` as a C struct; the pure helpers (``_put``, ``_finish``) read it alike."""

    cdef public int kind
    cdef public object anchor
    cdef public Py_ssize_t start
    cdef public object mark
    cdef public Py_ssize_t height
    cdef public object items
    cdef public object key
    cdef public object key_mark
    cdef public bint merge
    cdef public object typed
    cdef public object seen

    def __cinit__(self, int kind, object anchor, Py_ssize_t start):
        self.kind = kind
        self.anchor = anchor
        self.start = start
        self.mark = None
        self.height = 0
        self.items = [] if kind == _SEQ else {}
        self.key = _NO_KEY
        self.key_mark = None
        self.merge = False
        self.typed = None
        self.seen = None


class _View:
    """The attributes of a PyYAML event that the pure helpers read (marks only serve errors)."""

    __slots__ = ("anchor", "implicit", "start_mark", "tag", "value")

    def __init__(self, tag, value=None, implicit=None):
        self.tag = tag
        self.value = value
        self.implicit = implicit
        self.anchor = None
        self.start_mark = None


cdef enum:
    _WORD = 0  # a String as it stands
    _DECIMAL = 1  # an Integer in plain decimal
    _OTHER = 2  # anything else: ask tokenize


cdef inline int _plain_shape(const yaml_char_t *chars, size_t length, size_t max_decimal) noexcept:
    """tokenize's two first answers, read from the UTF-8 bytes without making a call.

    * A letter first and more than 5 characters: a word; tokenize returns it unchanged (the
      pure builder takes the same shortcut).
    * 1 to ``max_decimal`` ASCII digits (at most 18 and at most ``max_int_digits``, so no limit
      can be met), no leading zero unless alone: tokenize's first branch, the decimal integer.
    """
    cdef size_t i
    cdef yaml_char_t c
    if length == 0:
        return _OTHER
    c = chars[0]
    if (c >= 65 and c <= 90) or (c >= 97 and c <= 122):
        # More than 5 bytes of UTF-8 may be 5 characters or fewer: count characters then.
        if length > 5 and _characters(chars, length) > 5:
            return _WORD
        return _OTHER
    if length > max_decimal or (c == 48 and length > 1):
        return _OTHER
    for i in range(length):
        c = chars[i]
        if c < 48 or c > 57:
            return _OTHER
    return _DECIMAL


cdef inline int _digits(const yaml_char_t *chars, size_t start, size_t count) noexcept:
    """The value of ``count`` ASCII digits at ``start``, or -1 if one of them is not a digit."""
    cdef int value = 0
    cdef size_t i
    cdef yaml_char_t c
    for i in range(start, start + count):
        c = chars[i]
        if c < 48 or c > 57:
            return -1
        value = value * 10 + (c - 48)
    return value


cdef inline int _days_in_month(int year, int month) noexcept:
    if month == 2:
        return 29 if (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)) else 28
    return 30 if month == 4 or month == 6 or month == 9 or month == 11 else 31


cdef enum:
    _NOT_A_NUMBER = 0
    _FLOAT_SHAPE = 1
    _NEGATIVE_INT = 2


cdef inline int _number_shape(const yaml_char_t *chars, size_t length, size_t max_decimal) noexcept:
    """``-?D+.D+([eE][-+]D+)?`` is a float's shape, ``-`` then 1 to ``max_decimal`` digits without a
    leading zero a negative integer's (D: an ASCII digit); anything else is neither."""
    cdef size_t i = 0, start
    if length and chars[0] == 45:  # "-"
        i = 1
    start = i
    while i < length and chars[i] >= 48 and chars[i] <= 57:
        i += 1
    if i == start:
        return _NOT_A_NUMBER
    if i == length:
        if start == 1 and chars[1] != 48 and length - 1 <= max_decimal:
            return _NEGATIVE_INT
        return _NOT_A_NUMBER
    if chars[i] != 46:  # "."
        return _NOT_A_NUMBER
    i += 1
    start = i
    while i < length and chars[i] >= 48 and chars[i] <= 57:
        i += 1
    if i == start:
        return _NOT_A_NUMBER
    if i == length:
        return _FLOAT_SHAPE
    if chars[i] != 69 and chars[i] != 101:  # "E" / "e"
        return _NOT_A_NUMBER
    i += 1
    if i == length or (chars[i] != 43 and chars[i] != 45):  # "+" / "-"
        return _NOT_A_NUMBER
    i += 1
    start = i
    while i < length and chars[i] >= 48 and chars[i] <= 57:
        i += 1
    return _FLOAT_SHAPE if i > start and i == length else _NOT_A_NUMBER


cdef object _plain(const yaml_char_t *chars, size_t length, object text, object digits, size_t max_decimal):
    """``tokenize(text, digits)``, with the forms audited's rows are made of read here directly.

    Each shortcut takes only inputs whose ``tokenize`` answer is certain, and hands anything
    else (out-of-range fields, other spellings) to ``tokenize`` itself:

    * empty → None;
    * an ASCII word of at most 5 letters → ``null``/``yes``/``true``/``on``/``no``/``false``/
      ``off`` in any case as nil/true/false, else the String (the STRINGISH row);
    * ``YYYY-MM-DD HH:MM:SS[.fraction] Z`` — how Psych writes a UTC time — with a real date in
      years 1583-9999 and a clock before 24:00:00 → the aware UTC datetime, the fraction cut to
      microseconds (``parse_time`` / ``ruby_time_utc``'s common case);
    * ``YYYY-MM-DD``, a real Gregorian date in years 1583-9999 → that date (``_ruby_date``);
    * ``:name`` with a letter or ``_`` then letters, digits or ``_`` → that Symbol;
    * a scalar without a line break that starts with a non-ASCII character, or an ASCII letter and is
      at most 5 bytes long with a character other than a letter → the String (no branch of
      ``tokenize`` other than its String answer can match such a start);
    * ``-?D+.D+`` with an optional ``[eE][-+]D+`` (D an ASCII digit) → ``float(text)`` (the FLOAT
      row, whose cleanup leaves such text as it is); ``-`` then 1 to ``max_decimal`` digits without a
      leading zero → that negative Integer.
    """
    cdef size_t i
    cdef yaml_char_t c
    cdef int year, month, day, hour, minute, second, micro, scale, number
    cdef bint letters
    if length == 0:
        return None
    c = chars[0]
    if c >= 128:  # tokenize: not a word, no regex row starts so: the String, whatever follows
        if memchr(chars, 10, length) == NULL:
            return text
        return _tokenize(text, digits)
    if length <= 5 and ((c >= 65 and c <= 90) or (c >= 97 and c <= 122)):
        letters = True
        for i in range(1, length):
            c = chars[i]
            if not ((c >= 65 and c <= 90) or (c >= 97 and c <= 122)):
                letters = False
                break
        if not letters:  # a word with a digit, a dot, …: no null/true/false line can match it
            if memchr(chars, 10, length) == NULL:
                return text
            return _tokenize(text, digits)
        if letters:
            c = chars[0] | 0x20
            if c != 121 and c != 116 and c != 111 and c != 110 and c != 102:  # not y t o n f
                return text
            lowered = text.lower()
            if lowered == "null":
                return None
            if lowered == "yes" or lowered == "true" or lowered == "on":
                return True
            if lowered == "no" or lowered == "false" or lowered == "off":
                return False
            return text
    elif c == 58 and length >= 2:  # ":"
        c = chars[1]
        if (c >= 65 and c <= 90) or (c >= 97 and c <= 122) or c == 95:
            for i in range(2, length):
                c = chars[i]
                if not ((c >= 65 and c <= 90) or (c >= 97 and c <= 122) or (c >= 48 and c <= 57) or c == 95):
                    return _tokenize(text, digits)
            return _Symbol(text[1:])
    elif c == 45 or (c >= 48 and c <= 57):  # "-" or a digit: a float or a negative integer?
        number = _number_shape(chars, length, max_decimal)
        if number == _FLOAT_SHAPE:
            return float(text)
        if number == _NEGATIVE_INT:
            return int(text)
    if length >= 10 and chars[4] == 45 and chars[7] == 45:  # "YYYY-MM-DD…"
        year = _digits(chars, 0, 4)
        month = _digits(chars, 5, 2)
        day = _digits(chars, 8, 2)
        if (
            year >= 1583 and month >= 1 and month <= 12
            and day >= 1 and day <= _days_in_month(year, month)
        ):
            if length == 10:
                return _date(year, month, day)
            if (
                length >= 21 and chars[10] == 32 and chars[13] == 58 and chars[16] == 58
                and chars[length - 2] == 32 and chars[length - 1] == 90  # " Z"
            ):
                hour = _digits(chars, 11, 2)
                minute = _digits(chars, 14, 2)
                second = _digits(chars, 17, 2)
                micro = 0
                if length == 21:
                    pass
                elif length >= 23 and chars[19] == 46:  # "."
                    scale = 100000
                    for i in range(20, length - 2):
                        c = chars[i]
                        if c < 48 or c > 57:
                            return _tokenize(text, digits)
                        if scale:
                            micro += (c - 48) * scale
                            scale //= 10
                else:
                    return _tokenize(text, digits)
                if 0 <= hour <= 23 and 0 <= minute <= 59 and 0 <= second <= 59:
                    return _datetime(year, month, day, hour, minute, second, micro, _UTC)
    return _tokenize(text, digits)


cdef inline size_t _characters(const yaml_char_t *chars, size_t length) noexcept:
    cdef size_t i, count = 0
    for i in range(length):
        if (chars[i] & 0xC0) != 0x80:
            count += 1
    return count


cdef inline object _text(const yaml_char_t *chars):
    if chars == NULL:
        return None
    return (<const char *>chars).decode("utf-8")


cdef class _Parser:
    cdef yaml_parser_t parser
    cdef yaml_event_t event
    cdef bint has_event
    cdef bytes data

    def __cinit__(self, bytes data):
        self.data = data
        self.has_event = False
        if yaml_parser_initialize(&self.parser) == 0:
            raise MemoryError
        yaml_parser_set_input_string(&self.parser, <const unsigned char *>self.data, len(self.data))
        yaml_parser_set_encoding(&self.parser, YAML_UTF8_ENCODING)

    def __dealloc__(self):
        if self.has_event:
            yaml_event_delete(&self.event)
        yaml_parser_delete(&self.parser)

    cdef int next(self) except -1:
        """Parse the next event into ``self.event``; 0 on a parser error."""
        if self.has_event:
            yaml_event_delete(&self.event)
            self.has_event = False
        if yaml_parser_parse(&self.parser, &self.event) == 0:
            return 0
        self.has_event = True
        return 1


def build_text(str text, limits):
    """``(True, value)`` / ``(False, None)`` exactly as ``_builder.build``, or ``DECLINED``."""
    try:
        return _build(_Parser(text.encode("utf-8")), limits)
    except Exception:
        return DECLINED


cdef object _build(_Parser p, limits):
    cdef Py_ssize_t max_nodes = limits.max_nodes
    cdef Py_ssize_t max_depth = limits.max_depth
    cdef object digits = limits.max_int_digits
    cdef size_t max_decimal = min(18, limits.max_int_digits)
    cdef Py_ssize_t nodes = 0
    cdef Py_ssize_t height
    cdef Py_ssize_t depth
    cdef Py_ssize_t size
    cdef yaml_event_type_t kind
    cdef const yaml_char_t *tag
    cdef const yaml_char_t *anchor_chars
    cdef bint is_seq
    cdef int collection
    cdef list stack = []
    cdef dict anchors = {}
    cdef object keys = _RubyKeys()
    cdef object value, key, items, anchor, entry
    cdef _Frame frame, top
    cdef int shape

    if not p.next() or p.event.type != YAML_STREAM_START_EVENT:
        return DECLINED
    if not p.next():
        return DECLINED
    if p.event.type == YAML_STREAM_END_EVENT:
        return (False, None)
    if p.event.type != YAML_DOCUMENT_START_EVENT:
        return DECLINED
    while True:
        if not p.next():
            return DECLINED
        kind = p.event.type
        if kind == YAML_SCALAR_EVENT:
            nodes += 1
            if nodes > max_nodes:
                return DECLINED
            value = PyUnicode_DecodeUTF8(<const char *>p.event.data.scalar.value, p.event.data.scalar.length, "strict")
            if p.event.data.scalar.plain_implicit == 1:
                shape = _plain_shape(p.event.data.scalar.value, p.event.data.scalar.length, max_decimal)
                if shape == _DECIMAL:
                    value = int(value)
                elif shape == _OTHER:
                    value = _plain(p.event.data.scalar.value, p.event.data.scalar.length, value, digits, max_decimal)
            elif p.event.data.scalar.quoted_implicit == 1 and p.event.data.scalar.tag == NULL:
                pass  # a quoted, untagged scalar: a String (_scalar's "quoted" branch)
            else:
                value = _scalar(
                    _View(_text(p.event.data.scalar.tag), value, (p.event.data.scalar.plain_implicit == 1, p.event.data.scalar.quoted_implicit == 1)), digits
                )
            height = 0
            if p.event.data.scalar.anchor != NULL:
                anchors[_text(p.event.data.scalar.anchor)] = (value, 1, 0)
        elif kind == YAML_MAPPING_START_EVENT or kind == YAML_SEQUENCE_START_EVENT:
            nodes += 1
            if nodes > max_nodes:
                return DECLINED
            depth = len(stack)
            if depth >= max_depth:
                return DECLINED
            is_seq = kind == YAML_SEQUENCE_START_EVENT
            if is_seq:
                tag = p.event.data.sequence_start.tag
                anchor_chars = p.event.data.sequence_start.anchor
            else:
                tag = p.event.data.mapping_start.tag
                anchor_chars = p.event.data.mapping_start.anchor
            if depth:
                top = stack[depth - 1]
                if top.kind != _SEQ and (top.key is _NO_KEY or top.merge):
                    return DECLINED  # a collection as a key or under "<<": the pure path says which
            if tag == NULL:
                collection = _SEQ if is_seq else _HASH
            else:
                collection = _collection_kind(_View(_text(tag)), is_seq)
            anchor = _text(anchor_chars)
            frame = _Frame(collection, anchor, nodes - 1)
            if anchor is not None:
                anchors[anchor] = _OPEN
            stack.append(frame)
            continue
        elif kind == YAML_MAPPING_END_EVENT or kind == YAML_SEQUENCE_END_EVENT:
            frame = stack.pop()
            if frame.typed is None and (frame.kind == _SEQ or frame.kind == _HASH):
                value = frame.items
            else:
                value = _finish(frame, keys)
            height = frame.height + 1
            if frame.anchor is not None:
                anchors[frame.anchor] = (value, nodes - frame.start, height)
        elif kind == YAML_ALIAS_EVENT:
            entry = anchors.get(_text(p.event.data.alias.anchor))
            if entry is None or entry is _OPEN:
                return DECLINED
            value, size, height = entry
            nodes += size
            if nodes > max_nodes:
                return DECLINED
            depth = len(stack)
            if depth + height > max_depth:
                return DECLINED
            if height:
                if depth:
                    top = stack[depth - 1]
                    if top.kind != _SEQ and (top.key is _NO_KEY or top.merge):
                        return DECLINED
                value = keys.copy(value)
        else:
            return DECLINED
        if not stack:
            if not p.next():  # DocumentEndEvent: Psych reads up to here, and no further
                return DECLINED
            return (True, value.name if type(value) is _Symbol else value)
        top = stack[len(stack) - 1]
        if height > top.height:
            top.height = height
        if top.kind == _SEQ:
            top.items.append(value.name if type(value) is _Symbol else value)
        elif top.key is _NO_KEY:
            top.key = value
            if kind == YAML_SCALAR_EVENT:
                top.merge = value == "<<" and type(value) is str and _text(p.event.data.scalar.tag) != _YAML_STR
            else:
                top.merge = value == "<<" and type(value) is str
        else:
            if type(value) is _Symbol:
                value = value.name
            key = top.key
            items = top.items
            if top.typed is None and type(key) is str and key not in items:
                items[key] = value
                top.key = _NO_KEY
                top.merge = False
            else:
                _put(top, value)
