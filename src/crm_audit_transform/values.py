"""The value model every loaded ``audited_changes`` value belongs to (see docs/value-model.md).

Ruby's classes map onto plain Python values so that rules, converters and snapshots never meet a
YAML node, a Ruby object or a JSON-specific shape:

=================================  =====================================
Ruby                               Python
=================================  =====================================
nil, true, false                   None, True, False
Integer / Float / String           int / float / str
String tagged !binary, not UTF-8   bytes (BSON Binary; Extended JSON $binary)
BigDecimal                         decimal.Decimal
Date                               datetime.date
Time, DateTime, TimeWithZone       datetime.datetime, aware, in UTC
ActiveSupport::TimeZone            str (its name)
Symbol                             str
Hash, HashWithIndifferentAccess    dict (keys as loaded; see docs)
Array                              list
=================================  =====================================
"""

from __future__ import annotations

import datetime as _dt
import decimal as _decimal
from typing import TypeAlias

Scalar: TypeAlias = bool | int | float | str | bytes | _decimal.Decimal | _dt.date | _dt.datetime | None
Value: TypeAlias = Scalar | list["Value"] | dict[str, "Value"]
Changes: TypeAlias = dict[str, Value]
"""What ``load_audited_changes`` returns: column name → value (update rows: ``[old, new]``)."""

__all__ = ["Changes", "Scalar", "Value"]
