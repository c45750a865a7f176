"""How a workbook cell that is not text reads as text: numbers, dates, times, booleans.

The rules are those of ``ingest.rows.readers`` (its docstring says them). Each has a form for one
cell and, for the kinds a column of a large sheet is made of (numbers, dates, date-times), a polars
form that renders the whole column at once, with no Python call per cell; the two must give the
same text (``tests/ingest/rows/test_readers_workbooks.py`` checks them against each other).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import polars as pl

__all__ = ["datetime_texts", "excel_datetime", "number_text", "number_texts", "value_text"]

# Integers beyond this cannot be stored exactly in a spreadsheet cell (a double).
EXACT_FLOAT_INTEGER = 2**53
# Where Python's repr of a float is positional (no exponent): 1e-4 <= |x| < 1e16.
_POSITIONAL = (1e-4, 1e16)
# Months, days, hours, minutes and seconds as two digits: a lookup costs less than formatting.
_TWO_DIGITS = tuple(f"{number:02d}" for number in range(60))


def value_text(cell: Any) -> str | None:
    """A cell that is not text as the text a person sees; see ``ingest.rows.readers``."""
    if isinstance(cell, bool):
        return "true" if cell else "false"
    if isinstance(cell, int):
        return str(cell)
    if isinstance(cell, float):
        return number_text(cell)
    if isinstance(cell, datetime):
        return excel_datetime(cell)
    if isinstance(cell, date):
        return excel_datetime(datetime.combine(cell, time()))
    if isinstance(cell, time):
        return cell.strftime("%H:%M:%S")
    if isinstance(cell, timedelta):
        minutes, seconds = divmod(int(cell.total_seconds()), 60)
        hours, minutes = divmod(minutes, 60)
        return f"{hours}:{minutes:02d}:{seconds:02d}"
    return None if cell is None else str(cell)


def number_text(value: float) -> str:
    """Whole numbers without ``.0``, others in positional notation (never ``1e-05``)."""
    if value.is_integer() and abs(value) < EXACT_FLOAT_INTEGER:
        return str(int(value))
    text = repr(value)
    return format(Decimal(text), "f") if "e" in text else text


def excel_datetime(moment: datetime) -> str:
    """``YYYY/MM/DD hh:mm:ss[.sss] AM/PM``, the Signal API's Excel format."""
    hour = moment.hour
    millis = f".{moment.microsecond // 1000:03d}" if moment.microsecond else ""
    return (
        f"{moment.year:04d}/{_TWO_DIGITS[moment.month]}/{_TWO_DIGITS[moment.day]}"
        f" {_TWO_DIGITS[hour % 12 or 12]}:{_TWO_DIGITS[moment.minute]}"
        f":{_TWO_DIGITS[moment.second]}{millis} {'PM' if hour >= 12 else 'AM'}"
    )


def number_texts(values: pl.Series) -> pl.Series:
    """``number_text`` of each value of a Float64 column (missing stays missing).

    polars writes a float as the shortest digits that read back as the same number, as Python's
    repr does; where repr would use an exponent (or the value is not finite) the few such values
    are written by ``number_text`` itself.
    """
    x = pl.col("x")
    finite = x.is_finite()
    whole = finite & (x == x.floor()) & (x.abs() < EXACT_FLOAT_INTEGER)
    positional = finite & (x.abs() >= _POSITIONAL[0]) & (x.abs() < _POSITIONAL[1])
    texts = values.rename("x").to_frame().select(
        pl.when(whole).then(x.cast(pl.Int64).cast(pl.String))
        .when(positional).then(x.cast(pl.String))
        .otherwise(None)
    ).to_series()
    left = (texts.is_null() & values.is_not_null()).arg_true()
    if left.len():
        rest = [number_text(value) for value in values.gather(left).to_list()]
        texts = texts.scatter(left, pl.Series(rest, dtype=pl.String))
    return texts


def datetime_texts(values: pl.Series) -> pl.Series:
    """``excel_datetime`` of each value of a Datetime column (missing stays missing)."""
    moment = pl.col("x")
    micros = moment.dt.microsecond()
    millis = (
        pl.when(micros != 0)
        .then(pl.lit(".") + (micros // 1000).cast(pl.String).str.zfill(3))
        .otherwise(pl.lit(""))
    )
    noon = pl.when(moment.dt.hour() >= 12).then(pl.lit(" PM")).otherwise(pl.lit(" AM"))
    return values.rename("x").to_frame().select(
        moment.dt.strftime("%Y/%m/%d %I:%M:%S") + millis + noon
    ).to_series()
