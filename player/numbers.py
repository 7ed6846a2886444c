"""Vietnamese numbers in words, the northern reading that state radio uses.

105 is "một trăm linh năm", 24 "hai mươi tư", 2020 "hai nghìn không trăm hai mươi", 3/4 "ba phần
tư", 10,2 "mười phẩy hai". Pure functions on digits; ``player.normalize`` decides which to use.
"""

from __future__ import annotations

DIGITS = ("không", "một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín")
_UNITS_AFTER_MUOI = {1: "mốt", 4: "tư", 5: "lăm"}
_SCALES = ((1_000_000_000, "tỷ"), (1_000_000, "triệu"), (1_000, "nghìn"))
LONGEST_NUMBER = 15  # beyond this a digit string is a code, read digit by digit


def read_number(n: int) -> str:
    """Read an integer the northern way: 105 "một trăm linh năm", 2026 "hai nghìn không trăm
    hai mươi sáu", 1_005_000 "một triệu không trăm linh năm nghìn"."""
    if n < 0:
        return "âm " + read_number(-n)
    if n == 0:
        return DIGITS[0]
    return _read(n, leading=True)


def read_digits(text: str) -> str:
    """Read every digit in ``text`` on its own: "0912" is "không chín một hai"."""
    return " ".join(DIGITS[int(c)] for c in text if c.isdecimal())


def _read(n: int, leading: bool) -> str:
    # A group after the first is read in full: 1_000_005 is "một triệu không trăm linh năm".
    for size, name in _SCALES:
        if n >= size:
            high, low = divmod(n, size)
            spoken = f"{_read(high, leading)} {name}"
            return f"{spoken} {_read(low, leading=False)}" if low else spoken
    hundreds, rest = divmod(n, 100)
    tens, units = divmod(rest, 10)
    words = [DIGITS[hundreds], "trăm"] if hundreds or not leading else []
    if tens == 0:
        if units:
            words += ["linh", DIGITS[units]] if words else [DIGITS[units]]
    elif tens == 1:
        words.append("mười")
        if units:
            words.append("lăm" if units == 5 else DIGITS[units])
    else:
        words += [DIGITS[tens], "mươi"]
        if units:
            words.append(_UNITS_AFTER_MUOI.get(units, DIGITS[units]))
    return " ".join(words)


def read_integer(digits: str) -> str:
    """A digit string as a number; a code (too long, or "0123") digit by digit."""
    if len(digits) > LONGEST_NUMBER or (len(digits) > 3 and digits[0] == "0"):
        return read_digits(digits)
    return read_number(int(digits))


def read_decimals(digits: str) -> str:
    """The digits after a decimal comma: "05" is "không năm", "25" "hai mươi lăm"."""
    if len(digits) > 3:
        return read_digits(digits)
    zeros = len(digits) - len(digits.lstrip("0"))
    words = [DIGITS[0]] * zeros
    if digits.lstrip("0"):
        words.append(read_number(int(digits)))
    return " ".join(words)


def read_fraction(numerator: int, denominator: int) -> str:
    """A common fraction: 3/4 is "ba phần tư", 2/5 "hai phần năm", 1/10 "một phần mười"."""
    return f"{read_number(numerator)} phần {read_month(denominator)}"


def read_month(m: int) -> str:
    """A month, or a denominator: 4 alone is "tư" ("tháng tư", "ba phần tư")."""
    return "tư" if m == 4 else read_number(m)


def read_ordinal(n: int) -> str:
    """After "thứ": 1 is "nhất", 4 "tư" ("thứ nhất", "thứ tư")."""
    return {1: "nhất", 4: "tư"}.get(n, read_number(n))


_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def is_date(day: int, month: int) -> bool:
    """Whether ``day``/``month`` is a day of some year: 29/2 is, 31/4 is not."""
    return 1 <= month <= 12 and 1 <= day <= _MONTH_DAYS[month - 1]
