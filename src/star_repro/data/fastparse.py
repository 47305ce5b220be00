"""Vectorised tokenising and number parsing of whitespace-separated numeric text.

The raw NTU and PKU-MMD files are large texts of decimal numbers; reading them line by line with `float()` per
token is what makes the published scripts slow. Here a whole file is tokenised with a few NumPy passes over its
bytes, and only the tokens the pipeline needs are converted, all at once.

Exactness: a plain decimal token `[+-]digits[.digits]` of at most 15 characters has at most 15 significant
digits, so its digits form an integer m < 10**15 < 2**53 and its value is m / 10**f (f = digits after the
dot): one correctly rounded IEEE division of two exactly representable doubles (Clinger's fast path), which is
bit-identical to `float(token)`. Any other token (exponent notation, longer tokens) goes through `float()`
after a grammar check, so every accepted value equals Python's parse and nan/inf/hex/underscores are refused.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from star_repro.errors import InputFormatError

_FRONT = 32  # blank bytes before the text: right-aligned windows never start before the buffer
_PAD = 32  # blank bytes after the text: left-aligned windows never run past the buffer
_WS_BYTES = (9, 10, 11, 12, 13, 32)
_NUMERIC_CHARS = np.zeros(256, bool)
_NUMERIC_CHARS[[ord(c) for c in "0123456789.+-eE"]] = True
# Every byte a numeric text may hold: blanks (tab, LF, VT, FF, CR, space) and number characters. Deleting them
# with `bytes.translate` is one C pass; what is left are the bad bytes (nearly always none).
_TEXT_OK = bytes(_WS_BYTES) + b"0123456789.+-eE"
_FLOAT_RE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_TOKEN_RE = re.compile(rb"[^\x00-\x20]*")  # a token ends at any byte <= 32, as in `tokenize`

# float64 magnitudes at or above this round to +-inf when stored as float32 (half an ulp above float32's max)
FLOAT32_LIMIT = 2.0 ** 128 - 2.0 ** 103

_POW10 = np.array([10.0 ** k for k in range(23)], np.float64)
_CTZ16 = np.array([16] + [(v & -v).bit_length() - 1 for v in range(1, 1 << 16)], np.int64)  # lowest set bit
_LOW16 = np.array([(1 << k) - 1 for k in range(17)], np.uint16)  # k low bits set
_LOW32 = np.array([(1 << k) - 1 for k in range(33)], np.uint32)
# Right-aligned windows: the weight of column c and "columns >= s" masks.
_I_WEIGHT32 = np.array([10 ** (31 - c) if c >= 14 else 0 for c in range(32)], np.int64)


@dataclass
class Tokens:
    """Token and line boundaries of one text (0-based line numbers internally, 1-based in messages)."""

    buf: np.ndarray  # uint8: `_FRONT` blanks, the text, `_PAD` blanks
    start: np.ndarray  # int64 offset in `buf` of each token
    line_tok: np.ndarray  # int64 (n_lines + 1,): tokens of line i are [line_tok[i], line_tok[i+1])
    size: int  # length of the text
    nonws: np.ndarray  # bool, buf > 32
    raw: bytes  # the bytes behind `buf`
    newlines: np.ndarray  # int64 text offsets of every LF

    @property
    def text_bytes(self) -> np.ndarray:
        return self.buf[_FRONT:_FRONT + self.size]

    @property
    def ends_with_newline(self) -> bool:
        return self.size > 0 and self.buf[_FRONT + self.size - 1] == 10

    @property
    def n_tokens(self) -> int:
        return len(self.start)

    def counts(self) -> np.ndarray:
        """Tokens on each line."""
        return np.diff(self.line_tok)

    def line_of(self, tok: int) -> int:
        """1-based line number of token `tok`."""
        return int(np.searchsorted(self.line_tok, tok, side="right"))

    def text(self, tok: int) -> str:
        return _TOKEN_RE.match(self.raw, int(self.start[tok])).group().decode("ascii", "replace")


def tokenize(data: bytes | list[bytes]) -> Tokens:
    """Split `data` into lines (LF or CRLF; a last line without newline counts) and blank-separated tokens.
    A list of byte strings is tokenised as their concatenation (joined once, with the padding)."""
    parts = data if isinstance(data, list) else [data]
    raw = b"".join([b" " * _FRONT, *parts, b" " * _PAD])
    n = len(raw) - _FRONT - _PAD
    buf = np.frombuffer(raw, np.uint8)
    nonws = buf > 32
    starts = np.flatnonzero(np.greater(nonws[1:], nonws[:-1])) + 1
    nl = np.flatnonzero(buf[_FRONT:_FRONT + n] == 10)
    line_ends = nl + _FRONT if (n == 0 or raw[_FRONT + n - 1] == 10) else np.append(nl + _FRONT, _FRONT + n)
    line_tok = np.zeros(len(line_ends) + 1, np.int64)
    line_tok[1:] = np.searchsorted(starts, line_ends)
    return Tokens(buf=buf, start=starts, line_tok=line_tok, size=n, nonws=nonws, raw=raw, newlines=nl)


def float32_overflow(values: np.ndarray) -> np.ndarray:
    """Mask of float64 values that would become +-inf (or are not finite) as float32: one vectorised pass."""
    return ~(np.abs(values) < FLOAT32_LIMIT)


def describe_bad_number(text: str) -> str:
    """Why a token the parser refused (or that overflows float32) cannot be stored, for error messages."""
    if _FLOAT_RE.fullmatch(text):
        return f"value {text!r} does not fit float32 (|value| must be below 3.4028235e38)"
    return f"value {text!r} is not a decimal number"


def describe_bad_byte(tokens: Tokens, offset: int) -> str:
    """Why byte `offset` of `tokens.buf` (from `first_bad_char`) is refused: names the byte and the encoding."""
    b = int(tokens.buf[offset])
    if offset == _FRONT and tokens.raw[_FRONT:_FRONT + 3] == b"\xef\xbb\xbf":
        return "the file starts with a UTF-8 byte-order mark: expected plain ASCII text of decimal numbers"
    if offset == _FRONT and tokens.raw[_FRONT:_FRONT + 2] in (b"\xff\xfe", b"\xfe\xff"):
        return "the file starts with a UTF-16 byte-order mark: expected plain ASCII text of decimal numbers"
    if b >= 128 or b < 9:
        return f"byte 0x{b:02x} is not ASCII text: expected plain ASCII decimal numbers (a binary or non-ASCII file?)"
    return f"non-numeric character {chr(b)!r}: every value must be a decimal number"


def cr_only_line_ends(tokens: Tokens) -> bool:
    """True when the text has carriage returns but no line feed (classic Mac line ends): one long line."""
    text = tokens.text_bytes
    return bool((text == 13).any()) and not bool((text == 10).any())


def bad_char_offsets(tokens: Tokens) -> np.ndarray:
    """Text offsets (not `buf` offsets) of every byte that is neither blank nor part of a number
    (digits . + - e E). Control characters other than tab, LF, VT, FF and CR count as bad."""
    if not tokens.raw.translate(None, _TEXT_OK):  # the common case: no bad byte, found in one C pass
        return np.zeros(0, np.int64)
    buf = tokens.text_bytes
    nonws = tokens.nonws[_FRONT:_FRONT + tokens.size]
    d = buf - np.uint8(45)  # '-' .. '9' -> 0 .. 12 ('/' is 2)
    screen = ((d > 12) & nonws) | (d == 2) | (buf < 9) | ((buf - np.uint8(14)) < 18)
    if not screen.any():
        return np.zeros(0, np.int64)
    pos = np.flatnonzero(screen)
    ch = buf[pos]
    return pos[~(_NUMERIC_CHARS[ch] | np.isin(ch, _WS_BYTES))]


def first_non_text_byte(tokens: Tokens) -> int:
    """Offset in `tokens.buf` of the first byte that is not ASCII text (>= 0x80, or a control byte other than
    tab, LF, VT, FF, CR), or -1. Only error paths call it, to say "wrong encoding" rather than "wrong count"."""
    bad = bad_char_offsets(tokens)
    ch = tokens.text_bytes[bad]
    bad = bad[(ch >= 128) | (ch < 9)]
    return int(bad[0]) + _FRONT if len(bad) else -1


def reject_non_text(tok: Tokens, source: str) -> None:
    """Raise when the text is not ASCII (binary, UTF-16, a byte-order mark) or has CR-only line ends: on error
    paths, so that the message names the encoding problem instead of a count it caused."""
    bad_at = first_non_text_byte(tok)
    if bad_at >= 0:
        raise InputFormatError(source, line_at_offset(tok, bad_at), describe_bad_byte(tok, bad_at))
    if cr_only_line_ends(tok):
        raise InputFormatError(source, 1, "line ends are carriage returns only (CR): expected LF or CRLF line ends")


def first_bad_char(tokens: Tokens) -> int:
    """Offset in `tokens.buf` of the first byte `bad_char_offsets` reports, or -1."""
    bad = bad_char_offsets(tokens)
    return int(bad[0]) + _FRONT if len(bad) else -1


def line_at_offset(tokens: Tokens, offset: int) -> int:
    """1-based line of a `tokens.buf` offset."""
    return int(np.count_nonzero(tokens.buf[_FRONT:offset] == 10)) + 1


def _windows(tokens: Tokens, width: int) -> np.ndarray:
    """Every `width`-byte window of the buffer as one item (no copy): window i starts at byte i."""
    return np.ndarray((len(tokens.buf) - width + 1,), dtype=f"V{width}", buffer=tokens.buf, strides=(1,))


def _from_column(first: np.ndarray, width: int) -> np.ndarray:
    """(n, width) bool, row i true from column first[i] on (built as bit masks and unpacked: a broadcast
    comparison or a table gather is an order of magnitude slower)."""
    dtype = np.uint16 if width == 16 else np.uint32
    full = dtype(np.iinfo(dtype).max)
    bits = np.where(first >= width, dtype(0), full << np.minimum(first, width - 1).astype(dtype)).astype(dtype)
    return np.unpackbits(bits.astype(f"<u{width // 8}").view(np.uint8), bitorder="little").reshape(-1, width).view(bool)


def _bits16(mask: np.ndarray) -> np.ndarray:
    """(n, 16) bool -> (n,) uint16 with bit j set where mask[:, j] (packbits on the flat array is fast)."""
    return np.packbits(mask.reshape(-1), bitorder="little").view("<u2")


def parse_floats(tokens: Tokens, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 values of tokens `idx` (exactly `float(token)`) and a mask of tokens that are not numbers.

    Accepted grammar: `[+-]?(d+.?d*|.d+)([eE][+-]?d+)?`. Vectorised path: a 16-byte window from each token's
    start gives its length, dot and sign as bit masks; a second window ending at the token's end puts the
    digit of weight 10**(15-c) in column c if the dot is ignored, so A = digits @ weights is an exact
    integer (< 10**15). With f digits after the dot, the digits before it were weighted 10x too much:
    m = (A - F) / 10 + F with F = A mod 10**f (exact), and the value is m / 10**f.
    """
    idx = np.asarray(idx, np.int64)
    out = np.zeros(len(idx), np.float64)
    if len(idx) == 0:
        return out, np.zeros(0, bool)
    win = _windows(tokens, 16)
    start = tokens.start[idx]
    left = win[start].view(np.uint8).reshape(-1, 16)
    length = _CTZ16[_bits16(left <= 32)]  # 16: no blank in the window, too long for this path
    lenmask = _LOW16[length]
    dots = _bits16(left == 46) & lenmask
    digs = _bits16((left - np.uint8(48)) <= 9) & lenmask
    c0 = left[:, 0]
    sign = (c0 == 45) | (c0 == 43)
    valid = (length < 16) & ((digs | dots | sign) == lenmask) & ((dots & (dots - np.uint16(1))) == 0) & (digs != 0)
    has_dot = dots != 0
    frac = np.where(has_dot, length - 1 - _CTZ16[dots], 0)
    right = win[start + length - 16].view(np.uint8).reshape(-1, 16)
    dig = right - np.uint8(48)
    dig *= (dig <= 9) & _from_column(16 - length + sign, 16)
    a = _column_value(dig)
    p10 = _POW10[frac]
    f = a - np.floor(a / p10) * p10  # exact: a < 10**15, so the floor of the quotient is exact
    val = np.where(has_dot, (a - f) / 10.0 + f, a) / p10
    np.negative(val, out=val, where=c0 == 45)
    out[valid] = val[valid]
    bad = ~valid
    for i in np.flatnonzero(bad):  # exponents, long tokens, bad tokens: Python's parser decides
        text = tokens.text(int(idx[i]))
        if _FLOAT_RE.fullmatch(text):
            v = float(text)
            if np.isfinite(v):
                out[i] = v
                bad[i] = False
    return out, bad


def _column_value(dig: np.ndarray) -> np.ndarray:
    """sum_c dig[:, c] * 10**(15 - c) of (n, 16) digits as float64, exact (the sum is an integer < 10**16):
    adjacent columns are merged in integer arithmetic (2, 4, then 8 digits per item), which moves far fewer
    bytes than a float64 (n, 16) product."""
    d2 = dig[:, 0::2].astype(np.uint16) * np.uint16(10) + dig[:, 1::2]
    d4 = d2[:, 0::2].astype(np.uint32) * np.uint32(100) + d2[:, 1::2]
    d8 = d4[:, 0::2] * np.uint32(10_000) + d4[:, 1::2]
    return d8[:, 0].astype(np.float64) * 1e8 + d8[:, 1]


def parse_uints(tokens: Tokens, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int64 values of tokens that must be plain unsigned integers (digits only, at most 18), and a bad mask."""
    idx = np.asarray(idx, np.int64)
    if len(idx) == 0:
        return np.zeros(0, np.int64), np.zeros(0, bool)
    win = _windows(tokens, 32)
    start = tokens.start[idx]
    left = win[start].view(np.uint8).reshape(-1, 32)
    ws = np.packbits((left <= 32).reshape(-1), bitorder="little").view("<u4")
    lo = ws & np.uint32(0xFFFF)
    length = np.where(lo != 0, _CTZ16[lo], 16 + _CTZ16[ws >> np.uint32(16)])  # 32: no blank in the window
    lenmask = _LOW32[length]
    digs = np.packbits(((left - np.uint8(48)) <= 9).reshape(-1), bitorder="little").view("<u4") & lenmask
    bad = ~((length >= 1) & (length <= 18) & (digs == lenmask))
    right = win[start + np.minimum(length, 18) - 32].view(np.uint8).reshape(-1, 32)
    dig = right - np.uint8(48)
    dig *= (dig <= 9) & _from_column(32 - np.minimum(length, 18), 32)
    vals = np.einsum("ij,j->i", dig.astype(np.int64), _I_WEIGHT32)
    vals[bad] = 0
    return vals, bad
