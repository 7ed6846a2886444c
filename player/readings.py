"""What the written forms of ward notices are read as: the tables behind ``player.normalize``.

Data only, no rules: the abbreviations of ward notices, the codes of Vietnamese legal documents,
units, road and division prefixes, and the context words that tell a date from a fraction. The
rules that use them live in ``player.normalize``; a new abbreviation, unit or issuing body is a
new row here, not a new regular expression. Every reading is lower case (a synthesizer says
"ủy ban nhân dân" the same way in any case) and has no digit (a second pass changes nothing).
"""

from __future__ import annotations

from typing import Final

# Government and ward vocabulary, matched case-sensitively as whole tokens (longest first).
ABBREVIATIONS: Final[dict[str, str]] = {
    # state, party, mass organisations
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
    "UBTVQH": "ủy ban thường vụ quốc hội",
    "BCH": "ban chấp hành",
    "BCĐ": "ban chỉ đạo",
    "BQL": "ban quản lý",
    "BTC": "ban tổ chức",
    "BTV": "ban thường vụ",
    "UBKT": "ủy ban kiểm tra",
    "BTG": "ban tuyên giáo",
    "BDV": "ban dân vận",
    "TW": "trung ương",
    "TƯ": "trung ương",
    "PCT": "phó chủ tịch",
    "ĐTN": "đoàn thanh niên",
    "ĐVTN": "đoàn viên thanh niên",
    "TNCS": "thanh niên cộng sản",
    "HLHPN": "hội liên hiệp phụ nữ",
    "LHPN": "liên hiệp phụ nữ",
    "HND": "hội nông dân",
    "HCCB": "hội cựu chiến binh",
    "CCB": "cựu chiến binh",
    "LĐLĐ": "liên đoàn lao động",
    "NCT": "người cao tuổi",
    "NKT": "người khuyết tật",
    "LHQ": "liên hợp quốc",
    # ministries and sectors, as they are written in running text
    "BTTTT": "bộ thông tin và truyền thông",
    "TT&TT": "thông tin và truyền thông",
    "TTTT": "thông tin và truyền thông",
    "TTCS": "thông tin cơ sở",
    "BYT": "bộ y tế",
    "BCA": "bộ công an",
    "BQP": "bộ quốc phòng",
    "BGDĐT": "bộ giáo dục và đào tạo",
    "GD&ĐT": "giáo dục và đào tạo",
    "GDĐT": "giáo dục và đào tạo",
    "BLĐTBXH": "bộ lao động thương binh và xã hội",
    "LĐTBXH": "lao động thương binh và xã hội",
    "BNNPTNT": "bộ nông nghiệp và phát triển nông thôn",
    "NN&PTNT": "nông nghiệp và phát triển nông thôn",
    "BTNMT": "bộ tài nguyên và môi trường",
    "TN&MT": "tài nguyên và môi trường",
    "TNMT": "tài nguyên và môi trường",
    "GTVT": "giao thông vận tải",
    "VHTTDL": "văn hóa thể thao và du lịch",
    "KH&CN": "khoa học và công nghệ",
    "CNTT": "công nghệ thông tin",
    "NHNN": "ngân hàng nhà nước",
    "KT-XH": "kinh tế xã hội",
    "VH-XH": "văn hóa xã hội",
    # places
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
    "NVH": "nhà văn hóa",
    "ĐBSCL": "đồng bằng sông cửu long",
    "VN": "việt nam",
    # security, safety, disasters
    "CA": "công an",
    "CAND": "công an nhân dân",
    "QĐND": "quân đội nhân dân",
    "BCHQS": "ban chỉ huy quân sự",
    "QS": "quân sự",
    "NVQS": "nghĩa vụ quân sự",
    "DQTV": "dân quân tự vệ",
    "LLVT": "lực lượng vũ trang",
    "CSGT": "cảnh sát giao thông",
    "ATGT": "an toàn giao thông",
    "TNGT": "tai nạn giao thông",
    "GPLX": "giấy phép lái xe",
    "PCCC": "phòng cháy chữa cháy",
    "CNCH": "cứu nạn cứu hộ",
    "PCTT": "phòng chống thiên tai",
    "TKCN": "tìm kiếm cứu nạn",
    "ATNĐ": "áp thấp nhiệt đới",
    "KTTV": "khí tượng thủy văn",
    "BĐKH": "biến đổi khí hậu",
    "ANTT": "an ninh trật tự",
    "TTATXH": "trật tự an toàn xã hội",
    "BLHS": "bộ luật hình sự",
    "BLDS": "bộ luật dân sự",
    "VPHC": "vi phạm hành chính",
    # health, schools, services
    "ATTP": "an toàn thực phẩm",
    "ATVSTP": "an toàn vệ sinh thực phẩm",
    "VSATTP": "vệ sinh an toàn thực phẩm",
    "VSMT": "vệ sinh môi trường",
    "BHYT": "bảo hiểm y tế",
    "BHXH": "bảo hiểm xã hội",
    "BHTN": "bảo hiểm thất nghiệp",
    "TTYT": "trung tâm y tế",
    "TYT": "trạm y tế",
    "BV": "bệnh viện",
    "TCMR": "tiêm chủng mở rộng",
    "SXH": "sốt xuất huyết",
    "TCM": "tay chân miệng",
    "KHHGĐ": "kế hoạch hóa gia đình",
    "THCS": "trung học cơ sở",
    "THPT": "trung học phổ thông",
    "HSSV": "học sinh sinh viên",
    "CMND": "chứng minh nhân dân",
    "CCCD": "căn cước công dân",
    "TTHC": "thủ tục hành chính",
    "DVC": "dịch vụ công",
    "DVCTT": "dịch vụ công trực tuyến",
    "CSDL": "cơ sở dữ liệu",
    "SĐT": "số điện thoại",
    "ĐT": "điện thoại",
    "ĐTDĐ": "điện thoại di động",
    "TBA": "trạm biến áp",
    "Cty": "công ty",
    "CTCP": "công ty cổ phần",
    "TNHH": "trách nhiệm hữu hạn",
    "MTV": "một thành viên",
    "QĐ": "quyết định",
    "NĐ-CP": "nghị định chính phủ",
    "NĐ": "nghị định",
    "NTM": "nông thôn mới",
    "HTX": "hợp tác xã",
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
SYLLABLE_KEYS: Final[frozenset[str]] = frozenset({"CA", "TƯ"})

# Abbreviations whose reading depends on a neighbour: (key, the text before it must end with,
# the text after it must start with, reading). Context is a regular expression, "" for any;
# the first row that fits wins, and a key with no fitting row falls back to ABBREVIATIONS.
CONTEXT_ABBREVIATIONS: Final[tuple[tuple[str, str, str, str], ...]] = (
    # Ban chỉ huy phòng chống thiên tai / quân sự, not the Party's ban chấp hành.
    ("BCH", "", r"\s+(?:PCTT|PCCC|QS|(?i:quân sự|phòng chống|phòng, chống))", "ban chỉ huy"),
    ("CP", r"(?i:công ty|cty)\s+$", "", "cổ phần"),
    # Flood alarm levels: "trên BĐ3" is "trên báo động ba".
    ("BĐ", "", r"\s?[1-3](?!\d)", "báo động"),
)

# Q.10, P.14, H. Củ Chi, X. Tân Phú: a division before its number or its name. A number
# follows only wards and districts (there is no "huyện 3").
DIVISIONS: Final[dict[str, tuple[str, bool]]] = {
    "Q": ("quận", True),
    "P": ("phường", True),
    "H": ("huyện", False),
    "X": ("xã", False),
}

# Road codes before their number: QL1A, QL.13, ĐT.743, TL10.
ROADS: Final[dict[str, str]] = {
    "QL": "quốc lộ",
    "TL": "tỉnh lộ",
    "HL": "hương lộ",
    "ĐT": "đường tỉnh",
    "ĐH": "đường huyện",
    "CT": "cao tốc",
}
# These are also other words ("ĐT" is điện thoại, "CT" chỉ thị): a road only with a dot or
# the number attached, "ĐT.743", "ĐT743", never "ĐT 114".
ROADS_ATTACHED_ONLY: Final[frozenset[str]] = frozenset({"ĐT", "CT"})

# After a number, longest first. "h" comes after the time rules have taken "17h30".
UNITS: Final[dict[str, str]] = {
    "m³/s": "mét khối trên giây",
    "m3/s": "mét khối trên giây",
    "km/h": "ki lô mét trên giờ",
    "km/giờ": "ki lô mét trên giờ",
    "m/s": "mét trên giây",
    "mg/l": "mi li gam trên lít",
    "mm/h": "mi li mét trên giờ",
    "µg/m³": "micrô gam trên mét khối",
    "µg/m3": "micrô gam trên mét khối",
    "km²": "ki lô mét vuông",
    "km2": "ki lô mét vuông",
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
    "tấn": "tấn",
    "lít": "lít",
    "ml": "mi li lít",
    "l": "lít",
    "kWh": "ki lô oát giờ",
    "kW": "ki lô oát",
    "MW": "mê ga oát",
    "kV": "ki lô vôn",
    "kVA": "ki lô vôn am pe",
    "hPa": "héc tô pát xcan",
    "°C": "độ xê",
    "°N": "độ vĩ bắc",
    "°S": "độ vĩ nam",
    "°E": "độ kinh đông",
    "°W": "độ kinh tây",
    "°": "độ",
    "%": "phần trăm",
    "‰": "phần nghìn",
    "VNĐ": "đồng",
    "VND": "đồng",
    "vnđ": "đồng",
    "đ": "đồng",
    "USD": "đô la",
    "k": "nghìn",
    "h": "giờ",
}

# "200.000 đồng/hộ" is "hai trăm nghìn đồng một hộ": a price per thing says "một", and so does
# an amount per thing or time after a unit ("4 m3/người/tháng", "250 kWh/tháng"); an amount per
# number of hours is "trong" ("150mm/3 giờ").
MONEY_WORDS: Final[tuple[str, ...]] = ("đồng", "đô la")

# Things counted per unit: "25.000 người/km2" is "hai mươi lăm nghìn người trên ki lô mét vuông".
COUNTED_PER_UNIT: Final[tuple[str, ...]] = ("người", "hộ", "nhân khẩu", "xe", "cây", "con")

# Words after which a number is read in a particular way.
ADDRESS_WORDS: Final[tuple[str, ...]] = (  # "hẻm 12/3" is "hẻm mười hai trên ba"
    "số nhà",
    "nhà số",
    "hẻm số",
    "số",
    "hẻm",
    "ngõ",
    "ngách",
    "kiệt",
    "nhà",
)
CALL_WORDS: Final[tuple[str, ...]] = (  # "gọi 114" is "gọi một một bốn"
    "gọi",
    "tổng đài",
    "đường dây nóng",
    "hotline",
    "điện thoại",
)
HOUR_WORDS: Final[tuple[str, ...]] = ("lúc", "từ", "đến", "tới", "vào")  # "từ 7g" is 7 o'clock
RATIO_WORDS: Final[tuple[str, ...]] = ("tỷ lệ", "tỉ lệ", "tỷ số", "tỉ số", "bản đồ")  # 1:500
ROMAN_KEYWORDS: Final[tuple[str, ...]] = (  # "Quý IV", "lần thứ XIII"; after "thứ", ordinal
    "quý",
    "khóa",
    "khoá",
    "đại hội",
    "thế kỷ",
    "thế kỉ",
    "chương",
    "lần thứ",
    "thứ",
)

# Written forms read as a whole, before any number rule sees them.
FIXED_READINGS: Final[dict[str, str]] = {
    "24/24h": "hai tư trên hai tư giờ",
    "24/24": "hai tư trên hai tư",
    "24/7": "hai tư trên bảy",
}

# ------------------------------------------------------------------------- legal documents
# The Vietnamese convention (Nghị định 30/2020/NĐ-CP, Phụ lục I): "số/năm/LOẠI-CƠ QUAN" for
# state documents ("100/2019/NĐ-CP"), "số/CƠ QUAN-ĐƠN VỊ" for official letters ("2455/BTTTT-
# TTCS"), and "số-LOẠI/CƠ QUAN" for the Party's ("18-NQ/TW").

# The kind of document, the first code after the number.
DOCUMENT_TYPES: Final[dict[str, str]] = {
    "NĐ": "nghị định",
    "NQ": "nghị quyết",
    "QĐ": "quyết định",
    "QĐi": "quy định",
    "TT": "thông tư",
    "TTLT": "thông tư liên tịch",
    "CT": "chỉ thị",
    "KH": "kế hoạch",
    "TB": "thông báo",
    "CV": "công văn",
    "CĐ": "công điện",
    "HD": "hướng dẫn",
    "BC": "báo cáo",
    "TTr": "tờ trình",
    "CTr": "chương trình",
    "KL": "kết luận",
    "QC": "quy chế",
    "ĐA": "đề án",
    "PA": "phương án",
    "GM": "giấy mời",
    "GP": "giấy phép",
    "BB": "biên bản",
    "HĐ": "hợp đồng",
    "L": "lệnh",
    "PL": "pháp lệnh",
}

# Other names a text gives the same kind before its number ("Văn bản số 12/UBND-VX").
DOCUMENT_TYPE_NAMES: Final[dict[str, tuple[str, ...]]] = {
    "CV": ("văn bản",),
    "QĐi": ("quy định",),
}

# Issuing bodies, and the units or fields after them ("-TTCS", "-VX").
DOCUMENT_BODIES: Final[dict[str, str]] = {
    "CP": "chính phủ",
    "TTg": "thủ tướng chính phủ",
    "VPCP": "văn phòng chính phủ",
    "QH": "quốc hội",
    "UBTVQH": "ủy ban thường vụ quốc hội",
    "CTN": "chủ tịch nước",
    "TANDTC": "tòa án nhân dân tối cao",
    "VKSNDTC": "viện kiểm sát nhân dân tối cao",
    "KTNN": "kiểm toán nhà nước",
    "BTTTT": "bộ thông tin và truyền thông",
    "BYT": "bộ y tế",
    "BTC": "bộ tài chính",
    "BCA": "bộ công an",
    "BQP": "bộ quốc phòng",
    "BGDĐT": "bộ giáo dục và đào tạo",
    "BLĐTBXH": "bộ lao động thương binh và xã hội",
    "BNNPTNT": "bộ nông nghiệp và phát triển nông thôn",
    "BNNMT": "bộ nông nghiệp và môi trường",
    "BTNMT": "bộ tài nguyên và môi trường",
    "BXD": "bộ xây dựng",
    "BGTVT": "bộ giao thông vận tải",
    "BCT": "bộ công thương",
    "BNV": "bộ nội vụ",
    "BTP": "bộ tư pháp",
    "BKHĐT": "bộ kế hoạch và đầu tư",
    "BVHTTDL": "bộ văn hóa thể thao và du lịch",
    "BKHCN": "bộ khoa học và công nghệ",
    "BNG": "bộ ngoại giao",
    "NHNN": "ngân hàng nhà nước",
    "UBND": "ủy ban nhân dân",
    "HĐND": "hội đồng nhân dân",
    "UBMTTQ": "ủy ban mặt trận tổ quốc",
    "MTTQ": "mặt trận tổ quốc",
    "BCĐ": "ban chỉ đạo",
    "BCH": "ban chỉ huy",
    "BQL": "ban quản lý",
    "TW": "trung ương",
    "TU": "tỉnh ủy",
    "HU": "huyện ủy",
    "QU": "quận ủy",
    "ĐU": "đảng ủy",
    "BTGTW": "ban tuyên giáo trung ương",
    "BDVTW": "ban dân vận trung ương",
    "BTCTW": "ban tổ chức trung ương",
    "BCSĐ": "ban cán sự đảng",
    "SYT": "sở y tế",
    "STTTT": "sở thông tin và truyền thông",
    "SGDĐT": "sở giáo dục và đào tạo",
    "STC": "sở tài chính",
    "SNV": "sở nội vụ",
    "STNMT": "sở tài nguyên và môi trường",
    "SXD": "sở xây dựng",
    "SGTVT": "sở giao thông vận tải",
    "SLĐTBXH": "sở lao động thương binh và xã hội",
    "SNNPTNT": "sở nông nghiệp và phát triển nông thôn",
    "SVHTTDL": "sở văn hóa thể thao và du lịch",
    "CAT": "công an tỉnh",
    # units and fields that drafted the letter
    "TTCS": "cục thông tin cơ sở",
    "PTTH": "cục phát thanh truyền hình",
    "CĐS": "cục chuyển đổi số",
    "VP": "văn phòng",
    "VX": "lĩnh vực văn xã",
    "KT": "lĩnh vực kinh tế",
    "NC": "lĩnh vực nội chính",
    "KGVX": "lĩnh vực khoa giáo văn xã",
    "TH": "bộ phận tổng hợp",
    "PCTT": "phòng chống thiên tai",
    "QLĐT": "phòng quản lý đô thị",
    "TNMT": "phòng tài nguyên và môi trường",
    "VHTT": "phòng văn hóa thông tin",
    "YT": "phòng y tế",
    "KTTV": "khí tượng thủy văn",
}

# Elected bodies carry their term: "QH14" is "quốc hội khóa mười bốn".
DOCUMENT_TERM_BODIES: Final[frozenset[str]] = frozenset({"QH", "UBTVQH"})

# ------------------------------------------------------------------- dates against fractions
# "3/4" alone is a fraction ("ba phần tư"); context words make it a date. Matched without
# regard to case, as whole words, against the text just before or just after the "d/m".

# A date follows them with no "ngày" of its own: "hôm 3/4" is "hôm ba tháng tư".
DAY_WORDS: Final[tuple[str, ...]] = ("ngày", "hôm", "mùng", "mồng")
# Streets named after a date: "đường 3/2" is "đường ba tháng hai".
STREET_WORDS: Final[tuple[str, ...]] = ("đường", "phố")
# Sure signs of a date before it: parts of the day and weekdays ("chiều 8/9", "thứ Hai 3/4").
DATE_BEFORE: Final[tuple[str, ...]] = (
    "sáng",
    "trưa",
    "chiều",
    "tối",
    "đêm",
    "khuya",
    "rạng sáng",
    "chiều tối",
    "thứ hai",
    "thứ ba",
    "thứ tư",
    "thứ năm",
    "thứ sáu",
    "thứ bảy",
    "thứ 2",
    "thứ 3",
    "thứ 4",
    "thứ 5",
    "thứ 6",
    "thứ 7",
    "chủ nhật",
    "CN",
    "hôm nay",
    "ngày mai",
    "hôm qua",
    "đêm nay",
    "tối nay",
    "chiều nay",
    "sáng nay",
    "sáng mai",
)
# Sure signs of a date after it: a weekday, "8/9 (thứ Hai)".
DATE_AFTER: Final[tuple[str, ...]] = (
    "thứ hai",
    "thứ ba",
    "thứ tư",
    "thứ năm",
    "thứ sáu",
    "thứ bảy",
    "thứ 2",
    "thứ 3",
    "thứ 4",
    "thứ 5",
    "thứ 6",
    "thứ 7",
    "chủ nhật",
    "CN",
)
# Signs of a fraction: a share of something ("chiếm 1/3", "2/5 số hộ").
FRACTION_BEFORE: Final[tuple[str, ...]] = (
    "lên đến",
    "lên tới",
    "chiếm",
    "khoảng",
    "gần",
    "hơn",
    "trên",
    "dưới",
    "bằng",
    "còn",
    "được",
    "đạt",
    "tăng",
    "giảm",
    "mất",
    "thêm",
    "tỷ lệ",
    "tỉ lệ",
)
# Only words that name a whole: a noun that can start a sentence ("Từ 1/7 người lao động được
# tăng lương") says nothing against a date.
FRACTION_AFTER: Final[tuple[str, ...]] = (
    "dân số",
    "số",
    "tổng",
    "tổng số",
    "diện tích",
    "lượng",
    "khối lượng",
    "sản lượng",
    "kinh phí",
    "ngân sách",
    "giá trị",
    "trong số",
    "của",
    "còn lại",
)
# Weaker signs of a date, when nothing says fraction: "từ 8/9", "hạn chót 30/6".
DATE_WEAK_BEFORE: Final[tuple[str, ...]] = (
    "từ",
    "đến",
    "tới",
    "trước",
    "sau",
    "vào",
    "hết",
    "hạn",
    "chót",
    "kể từ",
    "cho đến",
    "đợt",
    "lễ",
    "dịp",
    "kỷ niệm",
    "chào mừng",
    "quốc khánh",
    "dương lịch",
    "thời gian",
)
# Years of a bare "m/yyyy" ("12/2026"); "1/1000" is a fraction.
YEARS: Final[range] = range(1900, 2100)
