# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""``extended_json.relaxed_json_bytes`` compiled: an activity log's line written in one C pass.

The pure path builds the document's dicts (``documents.activity_log_document`` with the
``RELAXED_JSON`` walk) and has orjson print them. Here the same document is written straight into
a byte buffer, with orjson's own compact format: no spaces, strings as UTF-8 with only ``"``,
``\\`` and the control characters escaped (the escapes are read from orjson itself when the module
is set up, and the module declines to run if orjson prints any ASCII character otherwise).

Only the common values are written here: exact ``str``, ``bool``, ``None``, int64 ``int``,
aware-UTC ``datetime`` from 1970 on, and ``dict``/``list``/``tuple`` of them. Every other value is
handed to the very Python functions the pure path calls (``documents.encode_leaf``, ``RELAXED_JSON.value``,
``escape_key``) and their JSON-ready answer is printed (anything but plain JSON by ``orjson.dumps``
itself). Anything unusual — a non-``str`` dict key, a container subclass, nesting past 40 levels, a
string that is not UTF-8, any exception at all — makes the whole log go to the pure path, which
gives the exact bytes or error the library defines. So this module can only be faster, never
different, as long as its success path mirrors the pure one (a property test holds them equal).
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.datetime cimport (
    datetime_tzinfo,
    import_datetime,
    datetime_year,
    datetime_month,
    datetime_day,
    datetime_hour,
    datetime_minute,
    datetime_second,
    datetime_microsecond,
)
from cpython.long cimport PyLong_AsLongLongAndOverflow
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy

import datetime as _dt

import orjson

import_datetime()


cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object text, Py_ssize_t *size) except NULL


cdef struct Buf:
    char *data
    Py_ssize_t size
    Py_ssize_t cap


class _Declined(Exception):
    """The log holds something this module does not write: the pure path takes it."""


cdef int MAX_DEPTH = 40  # far below MongoDB's 97 levels left for a value: no nesting error to mirror

# Whether orjson escapes a byte of a string's UTF-8, and its escape (read from orjson by ``configure``).
cdef bint ESCAPED[256]
cdef char ESCAPE_TEXT[128][8]
cdef Py_ssize_t ESCAPE_SIZE[256]

cdef object _dumps = orjson.dumps
cdef object _UTC = _dt.UTC
cdef type _DATETIME = _dt.datetime

# Set by ``configure``: the pure path's own functions.
cdef object _pure = None
cdef object _walk = None
cdef object _leaf = None
cdef object _walk_value = None
cdef object _walk_datetime = None
cdef object _escape_key = None
cdef object _flat_leaves = None
cdef object _attribute_room = None
cdef object _metadata_room = None
cdef bint _ready = False


def _read_escapes():
    """orjson's print of every ASCII character; False when one is neither itself nor a short escape."""
    cdef int code
    for code in range(256):
        ESCAPED[code] = False
        ESCAPE_SIZE[code] = 0
    for code in range(128):
        quoted = _dumps(chr(code))
        printed = quoted[1:len(quoted) - 1]
        if printed == chr(code).encode("ascii"):
            if code < 32 or code in (34, 92):
                return False
            continue
        if not (code < 32 or code in (34, 92)) or len(printed) > 6:
            return False
        ESCAPED[code] = True
        ESCAPE_SIZE[code] = len(printed)
        memcpy(ESCAPE_TEXT[code], <const char *>printed, len(printed))
    for sample in ("é", "\u2028", "\u2029", "\U0001F600", "\ufeff"):  # non-ASCII: UTF-8 as it is
        if _dumps(sample) != b'"' + sample.encode("utf-8") + b'"':
            return False
    return True


def configure(pure, walk, leaf, escape_key, flat_leaves, attribute_room, metadata_room):
    """Take the pure path: ``pure(log)`` its bytes, ``walk`` its ``ValueEncoder`` (``RELAXED_JSON``),
    ``leaf`` ``documents.encode_leaf``; True when this module will write lines (orjson prints as expected)."""
    global _pure, _walk, _leaf, _walk_value, _walk_datetime, _escape_key, _flat_leaves
    global _attribute_room, _metadata_room, _ready
    _pure = pure
    _walk = walk
    _leaf = leaf
    _walk_value = walk.value
    _walk_datetime = walk.datetime
    _escape_key = escape_key
    _flat_leaves = frozenset(flat_leaves)
    _attribute_room = attribute_room
    _metadata_room = metadata_room
    _ready = bool(_read_escapes())
    return _ready


cdef inline int reserve(Buf *buf, Py_ssize_t more) except -1:
    cdef Py_ssize_t need = buf.size + more
    cdef Py_ssize_t cap
    cdef char *grown
    if need <= buf.cap:
        return 0
    cap = buf.cap * 2
    while cap < need:
        cap *= 2
    grown = <char *>realloc(buf.data, cap)
    if grown == NULL:
        raise MemoryError()
    buf.data = grown
    buf.cap = cap
    return 0


cdef inline int put(Buf *buf, const char *text, Py_ssize_t size) except -1:
    reserve(buf, size)
    memcpy(buf.data + buf.size, text, size)
    buf.size += size
    return 0


cdef inline int put_char(Buf *buf, char c) except -1:
    reserve(buf, 1)
    buf.data[buf.size] = c
    buf.size += 1
    return 0


cdef inline bint has_special(unsigned long long word):
    """Whether any of 8 bytes is < 0x20, ``"`` or ``\\`` (the bytes orjson escapes; exact, no false hits)."""
    cdef unsigned long long ones = 0x0101010101010101ULL
    cdef unsigned long long highs = 0x8080808080808080ULL
    cdef unsigned long long quote = word ^ (ones * 0x22)
    cdef unsigned long long backslash = word ^ (ones * 0x5C)
    return (((word - ones * 0x20) & ~word) | ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash)) & highs != 0


cdef int put_str(Buf *buf, str text) except -1:
    """An exact ``str`` as orjson prints it; a lone surrogate raises (the pure path then refuses it)."""
    cdef Py_ssize_t size, i = 0
    cdef const char *data = PyUnicode_AsUTF8AndSize(text, &size)
    cdef unsigned long long word
    cdef unsigned char c
    cdef char *out
    while i + 8 <= size:  # 8 bytes at a time up to the first byte to escape
        memcpy(&word, data + i, 8)
        if has_special(word):
            break
        i += 8
    while i < size and not ESCAPED[<unsigned char>data[i]]:
        i += 1
    reserve(buf, i + (size - i) * 6 + 2)
    out = buf.data + buf.size
    out[0] = 34
    memcpy(out + 1, data, i)
    out += i + 1
    while i < size:
        c = <unsigned char>data[i]
        if ESCAPED[c]:
            memcpy(out, ESCAPE_TEXT[c], ESCAPE_SIZE[c])
            out += ESCAPE_SIZE[c]
        else:
            out[0] = c
            out += 1
        i += 1
    out[0] = 34
    buf.size = out + 1 - buf.data
    return 0


cdef int put_int64(Buf *buf, long long value) except -1:
    cdef char digits[24]
    cdef int n = 0
    cdef unsigned long long rest
    if value < 0:
        rest = <unsigned long long>(-(value + 1)) + 1
    else:
        rest = <unsigned long long>value
    while True:
        digits[n] = <char>(48 + rest % 10)
        n += 1
        rest //= 10
        if rest == 0:
            break
    reserve(buf, n + 1)
    if value < 0:
        buf.data[buf.size] = 45
        buf.size += 1
    while n > 0:
        n -= 1
        buf.data[buf.size] = digits[n]
        buf.size += 1
    return 0


cdef inline bint exact_int64(object value, long long *out):
    """An exact ``int`` within int64: its value in ``out``."""
    cdef int overflow = 0
    cdef long long number = PyLong_AsLongLongAndOverflow(value, &overflow)
    if overflow:
        return False
    out[0] = number
    return True


cdef inline void put_2(char *out, int value):
    out[0] = <char>(48 + value // 10)
    out[1] = <char>(48 + value % 10)


cdef bint put_utc_datetime(Buf *buf, object value) except -1:
    """``{"$date":"YYYY-MM-DDTHH:MM:SS[.mmm]Z"}`` of an aware UTC ``datetime`` from 1970 on (the leaf
    ``extended_json._any_datetime`` reads off orjson's print); False for any other datetime."""
    cdef int year, millis
    cdef char *out
    if type(value) is not _DATETIME or datetime_tzinfo(value) is not _UTC:
        return False
    year = datetime_year(value)
    if year < 1970:
        return False
    millis = datetime_microsecond(value) // 1000
    reserve(buf, 40)
    out = buf.data + buf.size
    memcpy(out, b'{"$date":"', 10)
    out += 10
    put_2(out, year // 100)
    put_2(out + 2, year % 100)
    out[4] = 45
    put_2(out + 5, datetime_month(value))
    out[7] = 45
    put_2(out + 8, datetime_day(value))
    out[10] = 84
    put_2(out + 11, datetime_hour(value))
    out[13] = 58
    put_2(out + 14, datetime_minute(value))
    out[16] = 58
    put_2(out + 17, datetime_second(value))
    out += 19
    if millis:
        out[0] = 46
        out[1] = <char>(48 + millis // 100)
        put_2(out + 2, millis % 100)
        out += 4
    memcpy(out, b'Z"}', 3)
    out += 3
    buf.size = out - buf.data
    return True


cdef inline int put_scalar(Buf *buf, object value, type kind) except -1:
    """The values every writer below prints the same way, whatever their place: an exact ``str``,
    ``None``, ``True``/``False`` and an int64 ``int``. 1 when ``value`` (of type ``kind``) was one of
    them and is written, 0 when it is none of them and nothing is written."""
    cdef long long number = 0
    if kind is str:
        put_str(buf, <str>value)
        return 1
    if value is None:
        put(buf, b"null", 4)
        return 1
    if value is True:
        put(buf, b"true", 4)
        return 1
    if value is False:
        put(buf, b"false", 5)
        return 1
    if kind is int and exact_int64(value, &number):
        put_int64(buf, number)
        return 1
    return 0


cdef int put_json(Buf *buf, object value, int depth) except -1:
    """A JSON-ready value (what the walk returns) as ``orjson.dumps`` prints it."""
    cdef type kind = type(value)
    cdef bint first
    if put_scalar(buf, value, kind):
        return 0
    if depth < MAX_DEPTH:
        if kind is dict:
            put_char(buf, 123)
            first = True
            for key, item in (<dict>value).items():
                if type(key) is not str:
                    raise _Declined()
                if not first:
                    put_char(buf, 44)
                first = False
                put_str(buf, <str>key)
                put_char(buf, 58)
                put_json(buf, item, depth + 1)
            return put_char(buf, 125)
        if kind is list:
            put_char(buf, 91)
            # Iterated, not indexed up to a length read once: an item's print runs Python code, and
            # a list that shrank meanwhile must end the loop, not be read past its end.
            first = True
            for item in <list>value:
                if not first:
                    put_char(buf, 44)
                first = False
                put_json(buf, item, depth + 1)
            return put_char(buf, 93)
    printed = _dumps(value)  # floats and anything else: orjson's own print
    return put(buf, <const char *>printed, len(<bytes>printed))


cdef inline bint plain_key(str key):
    """``escape_key(key) == key`` without the call: no ``.``, ``%`` or NUL, no leading ``$``."""
    cdef Py_ssize_t size, i
    cdef const char *data = PyUnicode_AsUTF8AndSize(key, &size)
    cdef char c
    if size and data[0] == 36:
        return False
    for i in range(size):
        c = data[i]
        if c == 46 or c == 37 or c == 0:
            return False
    return True


cdef int put_walked(Buf *buf, object value, int depth) except -1:
    """A value inside a list or dict, as the ``RELAXED_JSON`` walk encodes and orjson prints it."""
    cdef type kind = type(value)
    cdef bint first
    if put_scalar(buf, value, kind):
        return 0
    if kind is _DATETIME and put_utc_datetime(buf, value):
        return 0
    if depth >= MAX_DEPTH:
        raise _Declined()
    if kind is dict:
        put_char(buf, 123)
        first = True
        for key, item in (<dict>value).items():
            if type(key) is not str:
                raise _Declined()  # 1 and "1" are one key once escaped: the pure path decides
            if not first:
                put_char(buf, 44)
            first = False
            put_str(buf, <str>key if plain_key(<str>key) else _escape_key(key))
            put_char(buf, 58)
            put_walked(buf, item, depth + 1)
        return put_char(buf, 125)
    if kind is list or kind is tuple:
        put_char(buf, 91)
        first = True
        for item in value:  # iterated: a list that shrinks under Python code is not read past its end
            if not first:
                put_char(buf, 44)
            first = False
            put_walked(buf, item, depth + 1)
        return put_char(buf, 93)
    if kind in _flat_leaves:  # Decimal, float, date, bytes, a big int, another datetime: no nesting
        return put_json(buf, _walk_value(value), 0)
    raise _Declined()


cdef int put_value(Buf *buf, object value, object room) except -1:
    """An attribute's ``from``/``to`` or a metadata value, as ``activity_log_document`` puts it."""
    cdef type kind = type(value)
    if put_scalar(buf, value, kind):
        return 0
    if kind is _DATETIME and put_utc_datetime(buf, value):
        return 0
    if kind is dict or kind is list or kind is tuple:
        return put_walked(buf, value, 0)  # nests at most MAX_DEPTH levels, far within ``room``
    return put_json(buf, _leaf(value, _walk, room), 0)


cdef object write_document(Buf *buf, object log):
    cdef bint first
    actor = log.actor
    put(buf, b'{"company_sso_id":', 18)
    put_json(buf, log.company_sso_id, 0)
    put(buf, b',"customer_id":', 15)
    put_json(buf, log.customer_id, 0)
    put(buf, b',"category":', 12)
    put_json(buf, log.category, 0)
    put(buf, b',"action":', 10)
    put_json(buf, log.action, 0)
    put(buf, b',"actor":{"type":', 17)
    put_json(buf, actor.kind, 0)
    put(buf, b',"name":', 8)
    put_json(buf, actor.name, 0)
    sso_id = actor.sso_id
    if sso_id:
        put(buf, b',"id":', 6)
        put_json(buf, sso_id, 0)
    put(buf, b'},"attributes":[', 16)
    first = True
    for change in log.changes:
        if first:
            put(buf, b'{"field":', 9)
        else:
            put(buf, b',{"field":', 10)
        first = False
        put_json(buf, change.field, 0)
        put(buf, b',"label":', 9)
        put_json(buf, change.label, 0)
        put(buf, b',"from":', 8)
        put_value(buf, change.from_, _attribute_room)
        put(buf, b',"to":', 6)
        put_value(buf, change.to, _attribute_room)
        put_char(buf, 125)
    put(buf, b'],"timestamp":', 14)
    timestamp = log.timestamp
    if not put_utc_datetime(buf, timestamp):
        put_json(buf, _walk_datetime(timestamp), 0)
    external_id = log.external_id
    if external_id:
        put(buf, b',"external_id":', 15)
        put_json(buf, external_id, 0)
    put(buf, b',"source_tag":', 14)
    put_json(buf, log.source_tag, 0)
    put(buf, b',"metadata":{', 13)
    first = True
    for key, item in log.metadata.items():
        if type(key) is not str:
            raise _Declined()
        if not first:
            put_char(buf, 44)
        first = False
        put_str(buf, <str>key if plain_key(<str>key) else _escape_key(key))
        put_char(buf, 58)
        put_value(buf, item, _metadata_room)
    put(buf, b"}}", 2)
    return None


def relaxed_json_bytes(log, bint newline=False):
    """``extended_json.relaxed_json_bytes(log)`` (plus ``b"\\n"`` when ``newline``): the same bytes,
    or the same error, the pure path gives."""
    cdef Buf buf
    if not _ready:
        return _pure_line(log, newline)
    buf.cap = 2048
    buf.size = 0
    buf.data = <char *>malloc(buf.cap)
    if buf.data == NULL:
        raise MemoryError()
    try:
        write_document(&buf, log)
        if newline:
            put_char(&buf, 10)
        return PyBytes_FromStringAndSize(buf.data, buf.size)
    except Exception:
        return _pure_line(log, newline)
    finally:
        free(buf.data)


def written_here(log):
    """The bytes this module writes for ``log`` itself, or None where it hands the log to the pure path
    (for the tests: a writer that handed every log back would be identical too, and useless)."""
    cdef Buf buf
    if not _ready:
        return None
    buf.cap = 2048
    buf.size = 0
    buf.data = <char *>malloc(buf.cap)
    if buf.data == NULL:
        raise MemoryError()
    try:
        write_document(&buf, log)
        return PyBytes_FromStringAndSize(buf.data, buf.size)
    except Exception:
        return None
    finally:
        free(buf.data)


cdef object _pure_line(object log, bint newline):
    line = _pure(log)
    return line + b"\n" if newline else line
