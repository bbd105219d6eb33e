"""Tag and value tables for :mod:`exifclip.exif`, and the label helpers.

Tag *names* are those of the metadata-extractor library (Drew Noakes), which
produced the EXIF of YFCC100M that the official "EXIF as Language" model was
trained on (the YFCC100M EXIF expansion pack stores items such as
``Exif+SubIFD.Focal+Length:50.0+mm``). Value *labels* for enumerations follow
the EXIF 2.32 specification (CIPA DC-008-2019) in short form; the
``ME_*`` tables hold metadata-extractor's own wording, used only by the
``style="paper"`` text.

Each tag entry is ``tag id -> (name, kind, enum table or None)``; the kinds
are interpreted by ``exifclip.exif._FORMATTERS``. At the end: the Flash label,
and the translation of this package's values to the official training text
(``me_value`` then ``paper_refine``) used by ``exif_to_text(style="paper")``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

# -- enumerations (EXIF 2.32 values, short labels) -----------------------------

ORIENTATION = {
    1: "Horizontal (normal)",
    2: "Mirror horizontal",
    3: "Rotate 180",
    4: "Mirror vertical",
    5: "Mirror horizontal and rotate 270 CW",
    6: "Rotate 90 CW",
    7: "Mirror horizontal and rotate 90 CW",
    8: "Rotate 270 CW",
}
RESOLUTION_UNIT = {1: "None", 2: "inches", 3: "cm"}
YCBCR_POSITIONING = {1: "Centered", 2: "Co-sited"}
EXPOSURE_PROGRAM = {
    0: "Not defined",
    1: "Manual",
    2: "Normal program",
    3: "Aperture priority",
    4: "Shutter priority",
    5: "Creative program",
    6: "Action program",
    7: "Portrait mode",
    8: "Landscape mode",
}
SENSITIVITY_TYPE = {
    0: "Unknown",
    1: "Standard output sensitivity",
    2: "Recommended exposure index",
    3: "ISO speed",
    4: "Standard output sensitivity and recommended exposure index",
    5: "Standard output sensitivity and ISO speed",
    6: "Recommended exposure index and ISO speed",
    7: "Standard output sensitivity, recommended exposure index and ISO speed",
}
METERING_MODE = {
    0: "Unknown",
    1: "Average",
    2: "Center-weighted average",
    3: "Spot",
    4: "Multi-spot",
    5: "Pattern",
    6: "Partial",
    255: "Other",
}
LIGHT_SOURCE = {
    0: "Unknown",
    1: "Daylight",
    2: "Fluorescent",
    3: "Tungsten",
    4: "Flash",
    9: "Fine weather",
    10: "Cloudy",
    11: "Shade",
    12: "Daylight fluorescent",
    13: "Day white fluorescent",
    14: "Cool white fluorescent",
    15: "White fluorescent",
    16: "Warm white fluorescent",
    17: "Standard light A",
    18: "Standard light B",
    19: "Standard light C",
    20: "D55",
    21: "D65",
    22: "D75",
    23: "D50",
    24: "ISO studio tungsten",
    255: "Other",
}
COLOR_SPACE = {1: "sRGB", 2: "Adobe RGB", 0xFFFF: "Uncalibrated"}
FOCAL_PLANE_UNIT = {1: "None", 2: "inches", 3: "cm", 4: "mm", 5: "um"}
SENSING_METHOD = {
    1: "Not defined",
    2: "One-chip color area",
    3: "Two-chip color area",
    4: "Three-chip color area",
    5: "Color sequential area",
    7: "Trilinear",
    8: "Color sequential linear",
}
FILE_SOURCE = {0: "Others", 1: "Film scanner", 2: "Reflection print scanner", 3: "Digital camera"}
SCENE_TYPE = {1: "Directly photographed"}
CUSTOM_RENDERED = {0: "Normal process", 1: "Custom process"}
EXPOSURE_MODE = {0: "Auto", 1: "Manual", 2: "Auto bracket"}
WHITE_BALANCE_MODE = {0: "Auto", 1: "Manual"}
SCENE_CAPTURE_TYPE = {0: "Standard", 1: "Landscape", 2: "Portrait", 3: "Night scene"}
GAIN_CONTROL = {0: "None", 1: "Low gain up", 2: "High gain up", 3: "Low gain down", 4: "High gain down"}
CONTRAST = {0: "Normal", 1: "Soft", 2: "Hard"}
SATURATION = {0: "Normal", 1: "Low", 2: "High"}
SHARPNESS = {0: "Normal", 1: "Soft", 2: "Hard"}
SUBJECT_DISTANCE_RANGE = {0: "Unknown", 1: "Macro", 2: "Close view", 3: "Distant view"}
COMPOSITE_IMAGE = {
    0: "Unknown",
    1: "Not a composite image",
    2: "General composite image",
    3: "Composite image captured when shooting",
}
GPS_ALTITUDE_REF = {0: "Above sea level", 1: "Below sea level"}

# -- tags ----------------------------------------------------------------------

#: IFD0 and Exif sub-IFD tags (their ids do not collide, and TIFF files may
#: put Exif tags in IFD0). Tags not listed here (MakerNote 0x927C, PrintIM
#: 0xC4A5, Padding 0xEA1C, XP* tags, strip/tile layout, ...) are never decoded.
MAIN_TAGS = {
    0x0100: ("Image Width", "int", None),
    0x0101: ("Image Height", "int", None),
    0x010E: ("Image Description", "ascii", None),
    0x010F: ("Make", "ascii", None),
    0x0110: ("Model", "ascii", None),
    0x0112: ("Orientation", "enum", ORIENTATION),
    0x011A: ("X Resolution", "decimal", None),
    0x011B: ("Y Resolution", "decimal", None),
    0x0128: ("Resolution Unit", "enum", RESOLUTION_UNIT),
    0x0131: ("Software", "ascii", None),
    0x0132: ("Date/Time", "ascii", None),
    0x013B: ("Artist", "ascii", None),
    0x0213: ("YCbCr Positioning", "enum", YCBCR_POSITIONING),
    0x8298: ("Copyright", "ascii", None),
    0x829A: ("Exposure Time", "exposure", None),
    0x829D: ("F-Number", "fnumber", None),
    0x8822: ("Exposure Program", "enum", EXPOSURE_PROGRAM),
    0x8827: ("ISO Speed Ratings", "int", None),
    0x8830: ("Sensitivity Type", "enum", SENSITIVITY_TYPE),
    0x8831: ("Standard Output Sensitivity", "int", None),
    0x8832: ("Recommended Exposure Index", "int", None),
    0x9000: ("Exif Version", "version", None),
    0x9003: ("Date/Time Original", "ascii", None),
    0x9004: ("Date/Time Digitized", "ascii", None),
    0x9010: ("Offset Time", "ascii", None),
    0x9011: ("Offset Time Original", "ascii", None),
    0x9012: ("Offset Time Digitized", "ascii", None),
    0x9101: ("Components Configuration", "components", None),
    0x9102: ("Compressed Bits Per Pixel", "decimal", None),
    0x9201: ("Shutter Speed Value", "apex_shutter", None),
    0x9202: ("Aperture Value", "apex_aperture", None),
    0x9203: ("Brightness Value", "decimal", None),
    0x9204: ("Exposure Bias Value", "bias", None),
    0x9205: ("Max Aperture Value", "apex_aperture", None),
    0x9206: ("Subject Distance", "distance", None),
    0x9207: ("Metering Mode", "enum", METERING_MODE),
    # metadata-extractor names 0x9208 (LightSource in the EXIF standard) "White Balance".
    0x9208: ("White Balance", "enum", LIGHT_SOURCE),
    0x9209: ("Flash", "flash", None),
    0x920A: ("Focal Length", "focal", None),
    0x9286: ("User Comment", "comment", None),
    0x9290: ("Sub-Sec Time", "ascii", None),
    0x9291: ("Sub-Sec Time Original", "ascii", None),
    0x9292: ("Sub-Sec Time Digitized", "ascii", None),
    0xA000: ("FlashPix Version", "version", None),
    0xA001: ("Color Space", "enum", COLOR_SPACE),
    0xA002: ("Exif Image Width", "int", None),
    0xA003: ("Exif Image Height", "int", None),
    0xA20E: ("Focal Plane X Resolution", "decimal", None),
    0xA20F: ("Focal Plane Y Resolution", "decimal", None),
    0xA210: ("Focal Plane Resolution Unit", "enum", FOCAL_PLANE_UNIT),
    0xA215: ("Exposure Index", "decimal", None),
    0xA217: ("Sensing Method", "enum", SENSING_METHOD),
    0xA300: ("File Source", "enum", FILE_SOURCE),
    0xA301: ("Scene Type", "enum", SCENE_TYPE),
    0xA401: ("Custom Rendered", "enum", CUSTOM_RENDERED),
    0xA402: ("Exposure Mode", "enum", EXPOSURE_MODE),
    0xA403: ("White Balance Mode", "enum", WHITE_BALANCE_MODE),
    0xA404: ("Digital Zoom Ratio", "zoom", None),
    0xA405: ("Focal Length 35", "focal35", None),
    0xA406: ("Scene Capture Type", "enum", SCENE_CAPTURE_TYPE),
    0xA407: ("Gain Control", "enum", GAIN_CONTROL),
    0xA408: ("Contrast", "enum", CONTRAST),
    0xA409: ("Saturation", "enum", SATURATION),
    0xA40A: ("Sharpness", "enum", SHARPNESS),
    0xA40C: ("Subject Distance Range", "enum", SUBJECT_DISTANCE_RANGE),
    0xA420: ("Unique Image ID", "ascii", None),
    0xA430: ("Camera Owner Name", "ascii", None),
    0xA431: ("Body Serial Number", "ascii", None),
    0xA432: ("Lens Specification", "lens", None),
    0xA433: ("Lens Make", "ascii", None),
    0xA434: ("Lens Model", "ascii", None),
    0xA435: ("Lens Serial Number", "ascii", None),
    0xA460: ("Composite Image", "enum", COMPOSITE_IMAGE),
    0xA500: ("Gamma", "decimal", None),
}

INTEROP_TAGS = {
    0x0001: ("Interoperability Index", "ascii", None),
    0x0002: ("Interoperability Version", "version", None),
}

GPS_TAGS = {
    0x0000: ("GPS Version ID", "bytes_version", None),
    0x0001: ("GPS Latitude Ref", "ascii", None),
    0x0002: ("GPS Latitude", "gps_coord", None),
    0x0003: ("GPS Longitude Ref", "ascii", None),
    0x0004: ("GPS Longitude", "gps_coord", None),
    0x0005: ("GPS Altitude Ref", "enum", GPS_ALTITUDE_REF),
    0x0006: ("GPS Altitude", "metres", None),
    0x0007: ("GPS Time-Stamp", "gps_time", None),
    0x0008: ("GPS Satellites", "ascii", None),
    0x0009: ("GPS Status", "ascii", None),
    0x000A: ("GPS Measure Mode", "ascii", None),
    0x000B: ("GPS DOP", "decimal", None),
    0x000C: ("GPS Speed Ref", "ascii", None),
    0x000D: ("GPS Speed", "decimal", None),
    0x000E: ("GPS Track Ref", "ascii", None),
    0x000F: ("GPS Track", "decimal", None),
    0x0010: ("GPS Img Direction Ref", "ascii", None),
    0x0011: ("GPS Img Direction", "decimal", None),
    0x0012: ("GPS Map Datum", "ascii", None),
    0x001D: ("GPS Date Stamp", "ascii", None),
}

#: Enumeration table of each enum tag, by tag name (for reverse look-ups).
ENUMS_BY_NAME = {
    name: table for tags in (MAIN_TAGS, INTEROP_TAGS, GPS_TAGS) for name, kind, table in tags.values() if kind == "enum"
}

# -- metadata-extractor wording, for style="paper" -----------------------------
# Source: github.com/drewnoakes/metadata-extractor,
# Source/com/drew/metadata/exif/ExifDescriptorBase.java (2015 version); unknown
# codes read "Unknown (N)" there. Orientation and several others are longer than
# 20 characters, which the official code turns into "Unknown" anyway.

ME_ENUMS = {
    "Orientation": {
        1: "Top, left side (Horizontal / normal)",
        2: "Top, right side (Mirror horizontal)",
        3: "Bottom, right side (Rotate 180)",
        4: "Bottom, left side (Mirror vertical)",
        5: "Left side, top (Mirror horizontal and rotate 270 CW)",
        6: "Right side, top (Rotate 90 CW)",
        7: "Right side, bottom (Mirror horizontal and rotate 90 CW)",
        8: "Left side, bottom (Rotate 270 CW)",
    },
    "Resolution Unit": {1: "(No unit)", 2: "Inch", 3: "cm"},
    "YCbCr Positioning": {1: "Center of pixel array", 2: "Datum point"},
    "Exposure Program": {
        1: "Manual control",
        2: "Program normal",
        3: "Aperture priority",
        4: "Shutter priority",
        5: "Program creative (slow program)",
        6: "Program action (high-speed program)",
        7: "Portrait mode",
        8: "Landscape mode",
    },
    "Metering Mode": {
        0: "Unknown",
        1: "Average",
        2: "Center weighted average",
        3: "Spot",
        4: "Multi-spot",
        5: "Multi-segment",
        6: "Partial",
        255: "(Other)",
    },
    "White Balance": {
        0: "Unknown",
        1: "Daylight",
        2: "Florescent",
        3: "Tungsten",
        4: "Flash",
        9: "Fine Weather",
        10: "Cloudy",
        11: "Shade",
        12: "Daylight Flourescent",
        13: "Day White Flourescent",
        14: "Cool White Flourescent",
        15: "White Flourescent",
        16: "Warm White Flourescent",
        17: "Standard light",
        18: "Standard light (B)",
        19: "Standard light (C)",
        20: "D55",
        21: "D65",
        22: "D75",
        23: "D50",
        24: "Studio Tungsten",
        255: "(Other)",
    },
    "Color Space": {1: "sRGB", 0xFFFF: "Undefined"},
    "Focal Plane Resolution Unit": {1: "(No unit)", 2: "Inches", 3: "cm"},
    "Sensing Method": {
        1: "(Not defined)",
        2: "One-chip color area sensor",
        3: "Two-chip color area sensor",
        4: "Three-chip color area sensor",
        5: "Color sequential area sensor",
        7: "Trilinear sensor",
        8: "Color sequential linear sensor",
    },
    "File Source": {1: "Film Scanner", 2: "Reflection Print Scanner", 3: "Digital Still Camera (DSC)"},
    "Scene Type": {1: "Directly photographed image"},
    "Custom Rendered": {0: "Normal process", 1: "Custom process"},
    "Exposure Mode": {0: "Auto exposure", 1: "Manual exposure", 2: "Auto bracket"},
    "White Balance Mode": {0: "Auto white balance", 1: "Manual white balance"},
    "Scene Capture Type": {0: "Standard", 1: "Landscape", 2: "Portrait", 3: "Night scene"},
    # metadata-extractor orders these differently from the EXIF standard; kept as it is.
    "Gain Control": {0: "None", 1: "Low gain up", 2: "Low gain down", 3: "High gain up", 4: "High gain down"},
    "Contrast": {0: "None", 1: "Soft", 2: "Hard"},
    "Saturation": {0: "None", 1: "Low saturation", 2: "High saturation"},
    "Sharpness": {0: "None", 1: "Low", 2: "Hard"},
    "Subject Distance Range": {0: "Unknown", 1: "Macro", 2: "Close view", 3: "Distant view"},
}


# -- labels and wording helpers ---------------------------------------------------

# Flash codes listed in the EXIF standard: preferred when reversing labels.
# fmt: off
SPEC_FLASH = (0x00, 0x01, 0x05, 0x07, 0x09, 0x0D, 0x0F, 0x10, 0x18, 0x19, 0x1D, 0x1F, 0x20,
              0x41, 0x45, 0x47, 0x49, 0x4D, 0x4F, 0x59, 0x5D, 0x5F)
# fmt: on


def trim(x: Any, digits: int) -> str:
    """``x`` with at most ``digits`` decimals, trailing zeros removed."""
    text = f"{float(x):.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def flash_label(code: int) -> str:
    """EXIF 2.32 wording of the Flash bit field."""
    if code > 0x7F:
        return str(code)
    if code & 0x20 and not code & 0x01:
        return "No flash function"
    parts = ["Flash fired" if code & 0x01 else "Flash did not fire"]
    mode = (code >> 3) & 3
    if mode in (1, 2):
        parts.append("compulsory flash mode")
    elif mode == 3:
        parts.append("auto mode")
    ret = (code >> 1) & 3
    if ret in (2, 3):
        parts.append("return light detected" if ret == 3 else "return light not detected")
    if code & 0x40:
        parts.append("red-eye reduction mode")
    return ", ".join(parts)


# A plain decimal, as read_exif writes numbers. Fraction() alone would also take
# "1e999999999" and build a billion-digit integer (found by fuzzing exif_to_text).
_DECIMAL = re.compile(r"[+-]?(?:\d{1,20}(?:\.\d{0,20})?|\.\d{1,20})")


def _parse_number(value: str) -> Fraction:
    """``"1/500"``, ``"2.8"``, ``"-1/3 EV"`` as a Fraction; ValueError for anything else."""
    parts = value.split()[0].split("/", 1)
    if not all(_DECIMAL.fullmatch(part) for part in parts):
        raise ValueError(f"not a plain number: {value[:40]!r}")
    number = Fraction(parts[0])
    return number / Fraction(parts[1]) if len(parts) == 2 else number


def _me_simple(f: Fraction) -> str:
    """metadata-extractor's ``Rational.toSimpleString(true)`` of a reduced fraction."""
    if f.denominator == 1:
        return str(f.numerator)
    decimal = repr(float(f))
    return decimal if len(decimal) < 5 else f"{f.numerator}/{f.denominator}"


def _code_of(tag: str, value: str) -> int | None:
    table = ENUMS_BY_NAME.get(tag, {})
    for code, label in table.items():
        if label == value:
            return code
    return int(value) if value.isdigit() else None


def _me_label(tag: str, exif: Mapping) -> str | None:
    """metadata-extractor's label for the value ``exif`` holds for enum ``tag``."""
    return ME_ENUMS[tag].get(_code_of(tag, str(exif.get(tag, ""))))


_FLASH_CODES: dict[str, int] = {}
for _code in sorted(range(0x80), key=lambda c: (c not in SPEC_FLASH, c)):
    _FLASH_CODES.setdefault(flash_label(_code), _code)


def _me_flash(code: int) -> str:
    text = "Flash fired" if code & 0x01 else "Flash did not fire"
    if code & 0x04:
        text += ", return detected" if code & 0x02 else ", return not detected"
    if code & 0x10:
        text += ", auto"
    if code & 0x40:
        text += ", red-eye reduction"
    return text


def me_value(tag: str, value: str, exif: Mapping) -> str:
    """Our value in metadata-extractor's wording (best effort; else unchanged)."""
    try:
        if tag in ME_ENUMS:
            code = _code_of(tag, value)
            return value if code is None else ME_ENUMS[tag].get(code, f"Unknown ({code})")
        if tag == "Flash":
            code = _FLASH_CODES.get(value, int(value) if value.isdigit() else None)
            return value if code is None else _me_flash(code)
        if tag in ("Exposure Time", "Shutter Speed Value"):
            return _me_simple(_parse_number(value)) + " sec"
        if tag == "F-Number":
            return "F" + trim(_parse_number(value), 1)
        if tag in ("Aperture Value", "Max Aperture Value"):
            return f"F{float(_parse_number(value)):.1f}"
        if tag == "Exposure Bias Value":
            return _me_simple(_parse_number(value)) + " EV"
        if tag in ("X Resolution", "Y Resolution"):
            unit = _me_label("Resolution Unit", exif)
            return f"{_me_simple(_parse_number(value))} dots per {unit.lower() if unit else 'unit'}"
        if tag in ("Focal Plane X Resolution", "Focal Plane Y Resolution"):
            unit = _me_label("Focal Plane Resolution Unit", exif)
            return _me_simple(1 / _parse_number(value)) + (f" {unit.lower()}" if unit else "")
        if tag in ("Exif Image Width", "Exif Image Height", "Image Width", "Image Height"):
            return f"{value} pixels"
        if tag == "Compressed Bits Per Pixel":
            f = _parse_number(value)
            return _me_simple(f) + (" bit/pixel" if f == 1 else " bits/pixel")
        if tag == "Focal Length 35":
            return value.replace(" mm", "mm")
        if tag == "Digital Zoom Ratio":
            if value == "Not used":
                return "Digital zoom not used."
            return trim(_parse_number(value), 1)
        if tag == "Subject Distance" and value.endswith(" m"):
            text = f"{float(_parse_number(value)):.3f}".rstrip("0")
            return (text + "0" if text.endswith(".") else text) + " metres"
        if tag == "Interoperability Index":
            return "Recommended Exif Interoperability Rules (ExifR98)" if value == "R98" else f"Unknown ({value})"
    except (ValueError, ZeroDivisionError, IndexError, OverflowError):
        pass
    return value


def paper_refine(tag: str, value: str) -> str:
    """``refine_value`` of dataProcess/yfcc_dataInfo.py, keyed on the tag name."""
    try:
        if tag.endswith("Resolution") or tag == "Exposure Bias Value":
            parts = value.split()
            digits = parts[0].split("/")
            try:
                if len(digits) > 1:
                    parts[0] = str(int(digits[0]) // int(digits[1]))
            except (ValueError, ZeroDivisionError):
                parts[0] = digits[0]
            return " ".join(parts)
        if tag == "Focal Length":
            parts = value.split()
            parts[0] = f"{float(parts[0]):.1f}"
            return " ".join(parts)
        if tag == "ISO Speed Ratings":
            return value.split()[0]
        if len(value) > 20:
            return "Unknown"
        return re.sub(r"[^a-zA-Z0-9.,/-]", "", value)
    except (ValueError, IndexError, OverflowError):
        return "Unknown"
