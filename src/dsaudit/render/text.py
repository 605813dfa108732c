"""Untrusted text (file and folder names, manifest values) made safe to show in a report.

One rule for the HTML, Markdown and JUnit reports, so that a name reads the same in each:
- control characters are dropped (XML 1.0 cannot carry most of them, and none belongs in a name);
- a byte of a non-UTF-8 name (decoded with surrogateescape) is shown as ``\\xNN``;
- other lone surrogates and the non-characters U+FFFE/U+FFFF become U+FFFD;
- bidi controls, zero-width characters and the line/paragraph separators are shown as ``\\uXXXX``:
  they are invisible, yet they reorder ("cat\\u202egnp.exe" reads "catexe.png"), hide or split
  what is shown, or make two different names look the same.
The terminal has its own, stricter rule (render/terminal.py: every control character is shown).
"""

from __future__ import annotations

import re
from typing import Any

# bidi controls (U+061C, U+200E/F, U+202A-E, U+2066-9), zero-width characters (U+200B-D, U+FEFF)
# and the line/paragraph separators (U+2028/9)
INVISIBLE = "\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff"
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff" + INVISIBLE + "]")


def _replace(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    if 0xDC80 <= code <= 0xDCFF:  # a byte of a non-UTF-8 file name (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if 0xD800 <= code <= 0xDFFF or code in (0xFFFE, 0xFFFF):
        return "\ufffd"
    if code > 0xFF:  # a bidi control or an invisible character
        return f"\\u{code:04x}"
    return ""  # control characters are dropped


def clean(text: Any) -> str:
    """`text` as a string that shows what it holds (see the module docstring)."""
    return _UNSAFE.sub(_replace, str(text))
