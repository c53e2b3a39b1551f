"""Header (`.hdr`) text to typed properties, for the three variants of SPEC section 2."""
from __future__ import annotations

import math
import re

LEGACY_FIRST = '"Imaging FlowCytobot Acquisition Software version 1.0; October 2005"'
V2_FIRST = "Imaging FlowCytobot Acquisition Software version 2.0; May 2010"
LEGACY_FIELDS = (
    ("temperature", float),
    ("humidity", float),
    ("binarizeThreshold", int),
    ("scatteringPhotomultiplierSetting", float),
    ("fluorescencePhotomultiplierSetting", float),
    ("blobSizeThreshold", int),
)
_INT = re.compile(r"[+-]?\d+", re.ASCII)
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)
_RUN_TIME = re.compile(r"run time = (\S+) s\s+inhibit time = (\S+)")
_TEMP_HUM = re.compile(r"(\S+) temperature, (\S+) humidity")
_TYPED = {"temperature": float, "humidity": float, "binarizeThreshold": int, "blobSizeThreshold": int}


def typed(text: str) -> int | float | bool | str:
    """A header value as int, float or bool where it reads as one, else the text."""
    if _INT.fullmatch(text):
        try:
            return int(text)
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            return text
    if _FLOAT.fullmatch(text) and math.isfinite(float(text)):
        return float(text)
    if text in ("True", "False"):
        return text == "True"
    return text


def _number(text: str, kind: type) -> int | float | None:
    """`text` as a number of `kind` (an int may be written `30.0`), or None."""
    value = typed(text.strip().strip('"').strip())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if kind is float:
        try:
            return float(value)
        except OverflowError:  # an integer beyond the float range
            return None
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    return value


def parse_hdr(data: bytes) -> dict:
    """Properties of a header, given its bytes. Never fails: unknown text gives fewer properties."""
    text = data.decode("utf-8", errors="replace")
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        return {}
    first = lines[0]
    if first.startswith(("softwareVersion:", "SoftwareVersion:")):
        props = _key_value(lines)
    elif first == LEGACY_FIRST:
        props = _legacy(lines)
    elif first == V2_FIRST:
        props = _v2_sample_date(lines)
    else:
        props = {"context": first}
    for key, kind in _TYPED.items():
        if key in props and not isinstance(props[key], kind) or isinstance(props.get(key), bool):
            value = _number(str(props[key]), kind)
            if value is None:
                del props[key]
            else:
                props[key] = value
    return props


def _key_value(lines: list[str]) -> dict:
    props: dict = {"context": lines[0]}
    for line in lines[1:]:
        key, sep, value = line.partition(": ")
        if sep and key:
            props[key] = typed(value.strip())
    return props


def _legacy(lines: list[str]) -> dict:
    props: dict = {"context": "\n".join(line.strip('"') for line in lines[:-2])}
    if len(lines) >= 6:
        values = [v.strip().strip('"').strip() for v in lines[-1].split(",")]
        for (key, kind), value in zip(LEGACY_FIELDS, values):
            number = _number(value, kind)
            if number is not None:
                props[key] = number
    return props


def _v2_sample_date(lines: list[str]) -> dict:
    props: dict = {"context": lines[0]}
    if len(lines) < 2 or not lines[1].startswith("Sample Date"):
        return props
    for line in lines[1:]:
        for pattern, keys in ((_RUN_TIME, ("runTime", "inhibitTime")), (_TEMP_HUM, ("temperature", "humidity"))):
            m = pattern.search(line)
            for key, value in zip(keys, m.groups() if m else ()):
                number = _number(value, float)
                if number is not None:
                    props[key] = number
    return props
