"""Make remote text safe to show: no escape sequences, no control characters, bounded length.

Every string that came over the network or from a file passes through `clean()` at ingress
(probes) and again at render time (widgets). Rich/Textual pass ESC and C1 bytes straight to
the terminal, so an unsanitised body could clear the screen or write the operator's clipboard
(OSC 52). Whole ECMA-48 sequences are removed, lone controls shown as visible escapes.
"""

from __future__ import annotations

import re

# ESC/C1-introduced sequences: CSI (ESC[ or 0x9B) ... final byte; OSC/DCS/APC/PM/SOS (ESC] ESC P
# ESC _ ESC ^ ESC X or their C1 forms) ... terminated by BEL or ST (ESC\ or 0x9C) or end of text;
# and two-byte ESC sequences.
_SEQUENCES = re.compile(
    r"""
    (?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?     # CSI
  | (?:\x1b[\]P_^X]|[\x90\x98\x9d\x9e\x9f])                # OSC DCS SOS PM APC
        [^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?
  | \x1b[\x20-\x2f]*[\x30-\x7e]?                          # other ESC sequences / lone ESC
    """,
    re.VERBOSE,
)
# C0 controls except TAB/LF, DEL, C1 controls, bidi overrides/isolates, and lone surrogates.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_FAST_OK = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _visible(m: re.Match[str]) -> str:
    ch = m.group(0)
    code = ord(ch)
    if code == 0x0D:
        return "\\r"
    if 0xD800 <= code <= 0xDFFF:
        return "\ufffd"
    if code > 0xFF:
        return f"<U+{code:04X}>"
    return f"\\x{code:02x}"


def clean(text: object, *, max_len: int = 4096, newlines: bool = False) -> str:
    """Plain, printable, bounded text from anything remote.

    Bytes are decoded as UTF-8 with replacement. Escape sequences are dropped whole; other
    control characters become visible escapes (`\\x07`), so CR/BS overwrite tricks show up.
    With `newlines=False` a newline becomes a visible `⏎`; tabs become spaces.
    """
    if text is None:
        return ""
    if isinstance(text, bytes | bytearray | memoryview):
        s = bytes(text[: max_len * 4]).decode("utf-8", errors="replace")
    else:
        s = str(text)
    if len(s) > max_len * 4:
        s = s[: max_len * 4]
    if _FAST_OK.search(s) or "\x1b" in s:
        s = _SEQUENCES.sub("", s)
        s = _CONTROLS.sub(_visible, s)
    s = s.replace("\t", "    ")
    if not newlines:
        s = s.replace("\n", " ⏎ ")
    if len(s) > max_len:
        s = s[: max_len - 1] + "…"
    return s


def one_line(text: object, max_len: int = 200) -> str:
    """A single display line (error texts, header values, table cells)."""
    return clean(text, max_len=max_len, newlines=False)
