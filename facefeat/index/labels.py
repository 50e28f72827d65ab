"""Person labels: one normal form for every place a label comes in (add, rename, remove, the service).

:func:`normalize_label` applies Unicode NFC and strips surrounding white space, so "é" typed as one
code point or as "e" + combining accent is one person, and ``"  Ann  "`` is ``"Ann"``. Labels with
control characters or bidirectional overrides (which make a name display as another) are refused.
"""

from __future__ import annotations

import unicodedata

from facefeat.errors import InputError

#: bidirectional embedding/override/isolate controls: they reorder how a name is displayed
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
MAX_LABEL_CHARS = 1024


def normalize_label(label: object, what: str = "label") -> str:
    """The label in its one stored form (NFC, stripped); InputError when it is not a non-empty
    string or holds a control or bidi-override character (naming ``what`` and the position)."""
    if not isinstance(label, str):
        raise InputError(f"{what} must be a string, got {type(label).__name__}")
    s = unicodedata.normalize("NFC", label).strip()
    if not s:
        raise InputError(f"{what} is blank ({label[:40]!r}); give the person's name")
    if len(s) > MAX_LABEL_CHARS:
        raise InputError(f"{what} is {len(s)} characters long, above the limit of {MAX_LABEL_CHARS}")
    for i, ch in enumerate(s):
        if ch in BIDI_CONTROLS:
            raise InputError(f"{what} {s[:40]!r} holds a bidirectional control character U+{ord(ch):04X} at "
                             f"position {i}; it would make the name display as another")
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") and ch not in "\u200d":
            raise InputError(f"{what} {s[:40]!r} holds a control character U+{ord(ch):04X} at position {i}")
    return s


__all__ = ["normalize_label"]
