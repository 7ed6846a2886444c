"""Vietnamese text normalization for speech: what the announcer would say, in words.

Piper and espeak-ng read "08/9" digit by digit and "UBND" letter by letter, so text is rewritten
before synthesis: numbers by the northern reading rules (mốt, tư, lăm, linh, mươi; nghìn, triệu,
tỷ), dates, times, percentages, units, phone numbers digit by digit, and the abbreviations of ward
notices. Rules run in a fixed order, the most specific first: a phone number is claimed before it
can look like a date, a date before it can look like a range. Text that no rule claims keeps its
case and punctuation, so sentence breaks survive. Pure Python, no I/O, and it never raises.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from player.text import nfc

__all__ = ["ABBREVIATIONS", "normalize", "read_digits", "read_number"]

# Government and ward vocabulary, matched case-sensitively as whole tokens; longest key first.
ABBREVIATIONS: dict[str, str] = {
    "UBND": "ủy ban nhân dân",
    "HĐND": "hội đồng nhân dân",
    "MTTQ": "mặt trận tổ quốc",
    "MTTQVN": "mặt trận tổ quốc việt nam",
    "UBMTTQ": "ủy ban mặt trận tổ quốc",
    "UBMTTQVN": "ủy ban mặt trận tổ quốc việt nam",
    "ĐCSVN": "đảng cộng sản việt nam",
    "CHXHCN": "cộng hòa xã hội chủ nghĩa",
    "CHXHCNVN": "cộng hòa xã hội chủ nghĩa việt nam",
    "ĐBQH": "đại biểu quốc hội",
    "BCH": "ban chấp hành",
    "BCĐ": "ban chỉ đạo",
    "BQL": "ban quản lý",
    "TW": "trung ương",
    "TƯ": "trung ương",
    "PCT": "phó chủ tịch",
    "TP.HCM": "thành phố hồ chí minh",
    "Tp.HCM": "thành phố hồ chí minh",
    "TPHCM": "thành phố hồ chí minh",
    "HCM": "hồ chí minh",
    "TP.": "thành phố",
    "Tp.": "thành phố",
    "TP": "thành phố",
    "TX.": "thị xã",
    "TT.": "thị trấn",
    "KP": "khu phố",
    "TDP": "tổ dân phố",
    "KDC": "khu dân cư",
    "KCN": "khu công nghiệp",
    "CA": "công an",
    "CSGT": "cảnh sát giao thông",
    "PCCC": "phòng cháy chữa cháy",
    "CNCH": "cứu nạn cứu hộ",
    "ANTT": "an ninh trật tự",
    "TTATXH": "trật tự an toàn xã hội",
    "ATGT": "an toàn giao thông",
    "ATTP": "an toàn thực phẩm",
    "BHYT": "bảo hiểm y tế",
    "BHXH": "bảo hiểm xã hội",
    "BHTN": "bảo hiểm thất nghiệp",
    "TTYT": "trung tâm y tế",
    "TYT": "trạm y tế",
    "BV": "bệnh viện",
    "THCS": "trung học cơ sở",
    "THPT": "trung học phổ thông",
    "GD&ĐT": "giáo dục và đào tạo",
    "HSSV": "học sinh sinh viên",
    "CMND": "chứng minh nhân dân",
    "CCCD": "căn cước công dân",
    "TTHC": "thủ tục hành chính",
    "SĐT": "số điện thoại",
    "ĐT": "điện thoại",
    "QĐ": "quyết định",
    "NĐ-CP": "nghị định chính phủ",
    "NĐ": "nghị định",
    "ĐTN": "đoàn thanh niên",
    "HLHPN": "hội liên hiệp phụ nữ",
    "HCCB": "hội cựu chiến binh",
    "CCB": "cựu chiến binh",
    "NTM": "nông thôn mới",
    "HTX": "hợp tác xã",
    "KT-XH": "kinh tế xã hội",
    "VN": "việt nam",
    "COVID-19": "cô vít mười chín",
    "Covid-19": "cô vít mười chín",
    "COVID": "cô vít",
    "Covid": "cô vít",
    "Đ/c": "đồng chí",
    "đ/c": "đồng chí",
    "V/v": "về việc",
    "v/v": "về việc",
    "v.v.": "vân vân",
}

# Keys that are also Vietnamese syllables: in an all-caps line ("THỨ TƯ") they are words.
_SYLLABLE_KEYS = frozenset({"CA", "TƯ"})

_DIGITS = ("không", "một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín")
_UNITS_AFTER_MUOI = {1: "mốt", 4: "tư", 5: "lăm"}
_SCALES = ((1_000_000_000, "tỷ"), (1_000_000, "triệu"), (1_000, "nghìn"))
_LONGEST_NUMBER = 15  # beyond this a digit string is a code, read digit by digit

# After a number, longest first. "h" comes after the time rules have taken "17h30".
_UNITS = {
    "km²": "ki lô mét vuông",
    "km2": "ki lô mét vuông",
    "km/h": "ki lô mét trên giờ",
    "m/s": "mét trên giây",
    "m²": "mét vuông",
    "m2": "mét vuông",
    "m³": "mét khối",
    "m3": "mét khối",
    "km": "ki lô mét",
    "cm": "xen ti mét",
    "mm": "mi li mét",
    "m": "mét",
    "kg": "ki lô gam",
    "mg": "mi li gam",
    "g": "gam",
    "ha": "héc ta",
    "ml": "mi li lít",
    "l": "lít",
    "kWh": "ki lô oát giờ",
    "kW": "ki lô oát",
    "°C": "độ xê",
    "°": "độ",
    "%": "phần trăm",
    "VNĐ": "đồng",
    "VND": "đồng",
    "vnđ": "đồng",
    "đ": "đồng",
    "USD": "đô la",
    "k": "nghìn",
    "h": "giờ",
}


def read_number(n: int) -> str:
    """Read an integer the northern way: 105 "một trăm linh năm", 2026 "hai nghìn không trăm
    hai mươi sáu", 1_005_000 "một triệu không trăm linh năm nghìn"."""
    if n < 0:
        return "âm " + read_number(-n)
    if n == 0:
        return _DIGITS[0]
    return _read(n, leading=True)


def read_digits(text: str) -> str:
    """Read every digit in ``text`` on its own: "0912" is "không chín một hai"."""
    return " ".join(_DIGITS[int(c)] for c in text if c.isdecimal())


def _read(n: int, leading: bool) -> str:
    # A group after the first is read in full: 1_000_005 is "một triệu không trăm linh năm".
    for size, name in _SCALES:
        if n >= size:
            high, low = divmod(n, size)
            spoken = f"{_read(high, leading)} {name}"
            return f"{spoken} {_read(low, leading=False)}" if low else spoken
    hundreds, rest = divmod(n, 100)
    tens, units = divmod(rest, 10)
    words = [_DIGITS[hundreds], "trăm"] if hundreds or not leading else []
    if tens == 0:
        if units:
            words += ["linh", _DIGITS[units]] if words else [_DIGITS[units]]
    elif tens == 1:
        words.append("mười")
        if units:
            words.append("lăm" if units == 5 else _DIGITS[units])
    else:
        words += [_DIGITS[tens], "mươi"]
        if units:
            words.append(_UNITS_AFTER_MUOI.get(units, _DIGITS[units]))
    return " ".join(words)


def _read_integer(digits: str) -> str:
    if len(digits) > _LONGEST_NUMBER or (len(digits) > 3 and digits[0] == "0"):
        return read_digits(digits)
    return read_number(int(digits))


def _read_fraction(digits: str) -> str:
    if len(digits) > 3:
        return read_digits(digits)
    zeros = len(digits) - len(digits.lstrip("0"))
    words = [_DIGITS[0]] * zeros
    if digits.lstrip("0"):
        words.append(read_number(int(digits)))
    return " ".join(words)


def _month(m: int) -> str:
    return "tư" if m == 4 else read_number(m)


def _ordinal(n: int) -> str:
    return {1: "nhất", 4: "tư"}.get(n, read_number(n))


def _is_date(day: int, month: int) -> bool:
    return 1 <= day <= 31 and 1 <= month <= 12


# A digit touching a word is spaced off before a second pass, so only a letter counts as touching.
_NO_LETTER_BEFORE = r"(?<![^\W\d_])"
_NO_LETTER_AFTER = r"(?![^\W\d_])"

_Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]


def _spaced(m: re.Match[str], words: str) -> str:
    """Words in place of a match, kept apart from letters or digits that touch it."""
    text = m.string
    before = " " if m.start() > 0 and text[m.start() - 1].isalnum() else ""
    after = " " if m.end() < len(text) and text[m.end()].isalnum() else ""
    return before + words + after


def _abbreviation(m: re.Match[str]) -> str:
    key = m.group("key")
    if key in _SYLLABLE_KEYS and _in_capitals(m):
        return m.group(0)
    words = ABBREVIATIONS[key]
    if key == "v.v." and re.match(r"\s*(?:$|\n|[A-ZĐ])", m.string[m.end() :]):
        words += "."  # the abbreviation's dot also ended the sentence
    return _spaced(m, words)


def _in_capitals(m: re.Match[str]) -> bool:
    text = m.string
    near = re.findall(r"\w+", text[max(0, m.start() - 30) : m.start()])[-1:]
    near += re.findall(r"\w+", text[m.end() : m.end() + 30])[:1]
    return any(w.isupper() and len(w) > 1 and w not in ABBREVIATIONS for w in near)


def _abbreviation_pattern() -> re.Pattern[str]:
    keys = sorted(ABBREVIATIONS, key=len, reverse=True)
    alts = [re.escape(k) + _abbreviation_end(k) for k in keys]
    # The dot of "KP.3" belongs to the abbreviation, not to a decimal number.
    return re.compile(_NO_LETTER_BEFORE + "(?P<key>" + "|".join(alts) + r")(?:\.(?=\d))?")


def _abbreviation_end(key: str) -> str:
    if key[-1].isalnum():
        return _NO_LETTER_AFTER
    # "TP." needs a word after it, so that a sentence's last dot is never taken for it.
    return r"(?=\s*\w)" if key.count(".") == 1 else ""


def _district(m: re.Match[str]) -> str:
    """Q.10, Q10, P.12, Q. Bình Thạnh: a letter is a district or ward before a number or a name."""
    following = m.group(2)
    if not (following.isdecimal() or following.isupper()):
        return m.group(0)
    return _spaced(m, "quận" if m.group(1) == "Q" else "phường")


def _phone(m: re.Match[str]) -> str:
    groups = re.split(r"[ .\-]", m.group(0))
    wanted = (11, 12) if groups[0].startswith("+") else (10, 11)
    count = 0
    for taken, group in enumerate(groups, start=1):
        count += sum(c.isdecimal() for c in group)
        if count in wanted:
            spoken = ", ".join(
                ("cộng " if g.startswith("+") else "") + read_digits(g) for g in groups[:taken]
            )
            rest = m.group(0)[len(" ".join(groups[:taken])) :]
            return _spaced(m, spoken) + rest
        if count > wanted[-1]:
            break
    return m.group(0)


def _digit_groups(m: re.Match[str]) -> str:
    return _spaced(m, ", ".join(read_digits(g) for g in re.split(r"[ .\-]", m.group(0))))


def _after_keyword(m: re.Match[str]) -> str:
    return m.group(1) + read_digits(m.group(2))


def _address(m: re.Match[str]) -> str:
    return m.group(1) + " trên ".join(_read_integer(p) for p in m.group(2).split("/"))


def _date(day: str, month: str, year: str | None, prefix: str | None) -> str | None:
    d, mo = int(day), int(month)
    if not _is_date(d, mo):
        return None
    words = f"{prefix or 'ngày '}{read_number(d)} tháng {_month(mo)}"
    return f"{words} năm {read_number(int(year))}" if year else words


def _full_date(m: re.Match[str]) -> str:
    words = _date(m.group("d"), m.group("m"), m.group("y"), m.group("p"))
    return m.group(0) if words is None else _spaced(m, words)


def _day_range(m: re.Match[str]) -> str:
    first, last, month = int(m.group(2)), int(m.group(3)), m.group(4)
    if not (_is_date(first, 1) and _is_date(last, 1)):
        return m.group(0)
    words = f"{m.group(1) or 'ngày '}{read_number(first)} đến {read_number(last)}"
    if month is None:
        return _spaced(m, words)
    if not _is_date(1, int(month)):
        return m.group(0)
    words += f" tháng {_month(int(month))}"
    return _spaced(m, words + (f" năm {read_number(int(m.group(5)))}" if m.group(5) else ""))


def _month_year(m: re.Match[str]) -> str:
    month = int(m.group(2))
    if not 1 <= month <= 12:
        return m.group(0)
    words = f"{m.group(1) or 'tháng '}{_month(month)} năm {read_number(int(m.group(3)))}"
    return _spaced(m, words)


def _month_range(m: re.Match[str]) -> str:
    first, last = int(m.group(2)), int(m.group(3))
    if not (1 <= first <= 12 and 1 <= last <= 12):
        return m.group(0)
    words = f"{m.group(1)}{_month(first)} đến tháng {_month(last)}"
    return _spaced(m, f"{words} năm {read_number(int(m.group(4)))}")


def _month_name(m: re.Match[str]) -> str:
    month = int(m.group(2))
    return m.group(1) + _month(month) if 1 <= month <= 12 else m.group(0)


def _roman(m: re.Match[str]) -> str:
    value = _roman_value(m.group(2))
    if value is None:
        return m.group(0)
    keyword = m.group(1)
    words = _ordinal(value) if keyword.lower().endswith("thứ") else read_number(value)
    year = f" năm {read_number(int(m.group(3)))}" if m.group(3) else ""
    return _spaced(m, f"{keyword} {words}{year}")


_ROMAN = re.compile(r"M{0,3}(CM|CD|D?C{0,3})(XC|XL|L?X{0,3})(IX|IV|V?I{0,3})")
_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}


def _roman_value(numeral: str) -> int | None:
    if not numeral or not _ROMAN.fullmatch(numeral):
        return None
    values = [_ROMAN_VALUES[c] for c in numeral]
    return sum(-v if v < after else v for v, after in zip(values, [*values[1:], 0], strict=True))


def _time(m: re.Match[str]) -> str:
    hour, minute = int(m.group(1)), m.group(2)
    second = m.group(3) if m.re.groups > 2 else None
    if hour > 24 or (minute is not None and int(minute) > 59):
        return m.group(0)
    words = f"{read_number(hour)} giờ"
    if minute is not None:
        words += f" {read_number(int(minute))} phút"
    if second is not None:
        words += f" {read_number(int(second))} giây"
    return _spaced(m, words)


def _ordinal_number(m: re.Match[str]) -> str:
    return f"{m.group(1)} {_ordinal(int(m.group(2)))}"


def _unit(m: re.Match[str]) -> str:
    return _spaced(m, " " + _UNITS[m.group(1)])


def _number(m: re.Match[str]) -> str:
    whole, fraction = m.group(1), m.group(2)
    words = _read_integer(re.sub(r"[.,]", "", whole))
    if fraction is not None:
        words += " phẩy " + _read_fraction(fraction)
    return _spaced(m, words)


def _constant(words: str) -> Callable[[re.Match[str]], str]:
    return lambda m: _spaced(m, words)


_DAY = r"(?<![\d/.,\-])(?P<p>(?i:ngày)\s+)?(?P<d>\d{1,2})"
_END = r"(?![\d/]|[.,\-]\d)"
_UNIT_KEYS = "|".join(re.escape(k) for k in sorted(_UNITS, key=len, reverse=True))

_RULES: tuple[_Rule, ...] = (
    (_abbreviation_pattern(), _abbreviation),
    (re.compile(_NO_LETTER_BEFORE + r"([QP])(?:\.\s*|(?=\d))(?=(\w))"), _district),
    (re.compile(r"\s*&\s*"), _constant(" và ")),
    # Digits read one by one: phone numbers, hotlines, short numbers called by phone.
    (
        re.compile(
            r"(?<![\w+.,])(?:\+84[ .\-]?|0)(?:\d{9,10}|\d{1,4}(?:[ .\-]\d{2,4}){1,3})(?!\w)"
        ),
        _phone,
    ),
    (
        re.compile(r"(?<![\w.,])1[89]00[ .\-]?(?:\d{4}|\d{3}[ .\-]?\d{3})(?![\w.,]\d|\w)"),
        _digit_groups,
    ),
    (
        re.compile(r"((?i:gọi|tổng đài|đường dây nóng|hotline|điện thoại)\s*:?\s*)(\d{3,5})(?!\w)"),
        _after_keyword,
    ),
    (re.compile(r"(?<![\d/])24/7(?![\d/])"), _constant("hai tư trên bảy")),
    (re.compile(r"((?i:hẻm|ngõ|ngách|kiệt|nhà)\s+)(\d+(?:/\d+)+)(?![\d/])"), _address),
    # Dates, the most specific first.
    (
        re.compile(r"(?<![\d\-])(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})(?P<p>)(?![\d\-])"),
        _full_date,
    ),
    (re.compile(_DAY + r"(?P<s>[/.\-])(?P<m>\d{1,2})(?P=s)(?P<y>\d{4})" + _END), _full_date),
    (
        re.compile(
            r"(?<![\d/.,])((?i:ngày)\s+)?(\d{1,2})\s*[-–]\s*(\d{1,2})"
            r"(?:/(\d{1,2})(?:/(\d{4}))?" + _END + r"|(?=\s+(?i:tháng)\s*\d))"
        ),
        _day_range,
    ),
    (
        re.compile(
            r"(?<![\d/.,\-])(?P<p>(?i:ngày)\s+)(?P<d>\d{1,2})[/\-](?P<m>\d{1,2})(?P<y>)" + _END
        ),
        _full_date,
    ),
    (
        re.compile(r"(?<![\d/.,\-])((?i:tháng)\s+)(\d{1,2})\s*[-–]\s*(\d{1,2})/(\d{4})" + _END),
        _month_range,
    ),
    (re.compile(r"(?<![\d/.,\-])((?i:tháng)\s+)?(\d{1,2})/(\d{4})" + _END), _month_year),
    (re.compile(r"(?<![\d/.,\-])((?i:tháng)\s+)(\d{1,2})-(\d{4})" + _END), _month_year),
    (re.compile(r"(?<![\w/.,\-])(?P<p>)(?P<d>\d{1,2})/(?P<m>\d{1,2})(?P<y>)" + _END), _full_date),
    (re.compile(r"((?i:tháng)\s+)(\d{1,2})(?![\d/]|[.,]\d)"), _month_name),
    (
        re.compile(
            _NO_LETTER_BEFORE + r"((?i:quý|khóa|khoá|đại hội|thế kỷ|thế kỉ|chương|lần thứ|thứ))"
            r"\s+([IVXLCDM]+)" + _NO_LETTER_AFTER + r"(?:/(\d{4})(?!\d))?"
        ),
        _roman,
    ),
    # A hyphen between numbers is a range; one before a lone number is a minus sign.
    (re.compile(r"(?<=\d)\s*[-–]\s*(?=\d)"), _constant(" đến ")),
    (re.compile(r"(?<![\w\-])-(?=\d)"), _constant("âm ")),
    (re.compile(r"(?<![\d.,])(\d{1,2}):(\d{2})(?::(\d{2}))?(?![\d:])"), _time),
    (re.compile(r"(?<![\d.,])(\d{1,2})[hg](\d{2})(?:\s*phút)?(?!\w)"), _time),
    (re.compile(_NO_LETTER_BEFORE + r"((?i:thứ))\s+(\d{1,3})(?![\d]|[.,]\d)"), _ordinal_number),
    (re.compile(r"(?<=\d)\s*(" + _UNIT_KEYS + r")(?!\w)"), _unit),
    (re.compile(r"(?<=\d)/(?=\d)"), _constant(" trên ")),
    (
        re.compile(r"(\d{1,3}(?:\.\d{3})+(?!\d)|\d{1,3}(?:,\d{3}){2,}(?!\d)|\d+)(?:[,.](\d+))?"),
        _number,
    ),
    (re.compile(r"(?<=\w)-(?=[^\W\d_])|(?<=[^\W\d_])-(?=\w)"), _constant(" ")),
)

_SPACES = re.compile(r"[^\S\n]+")
_SPACE_BEFORE_PUNCTUATION = re.compile(r" +(?=[,.;:!?)\]])")
_SPACE_AFTER_OPENING = re.compile(r"(?<=[(\[]) +")


def normalize(text: str) -> str:
    """Rewrite Vietnamese text into the words a synthesizer should say.

    NFC first, then the rules; punctuation stays so that sentences still break. Never raises:
    a rule that cannot read its match leaves the text as it was.
    """
    text = nfc(text)
    for pattern, replace in _RULES:
        text = pattern.sub(replace, text)
    text = _SPACES.sub(" ", text)
    text = _SPACE_BEFORE_PUNCTUATION.sub("", text)
    text = _SPACE_AFTER_OPENING.sub("", text)
    return "\n".join(line.strip() for line in text.split("\n")).strip()
