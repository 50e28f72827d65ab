"""The command line's one output convention, and its one policy for inputs that fail.

* By default a command prints one short human line per result (or one summary line) on stdout;
  with ``--json`` it prints one JSON document (``Output.document``), or one JSON object a line for
  streams (``Output.record``: per image, per frame). Never a Python ``repr``.
* Notes and skipped inputs go to stderr, one line each, as ``facefeat: NAME: reason``.
* A bad input (unreadable, not a regular file, a symbolic-link loop, ...) is reported and the run
  goes on; at the end :meth:`Output.finish` prints how many failed and gives exit status 1 when
  any did (0 when all succeeded; 2 is a usage or setup error, 130 an interrupt).
* Every name that came from outside (file names, labels, messages quoting them) is printed through
  :func:`escape`, so a hostile file name cannot send terminal escapes or forge a line.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import unicodedata
from typing import Any, TextIO

from facefeat.results import BaseResult
from facefeat.results import _jsonable as results_jsonable
from facefeat.utils import json_safe

#: Unicode categories printed as escapes: controls, format characters (bidi overrides, zero-width),
#: line/paragraph separators, surrogates and unassigned code points
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def _escape_char(c: str) -> str:
    if c == "\\":
        return c
    if c in "\n\r\t":
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}[c]
    o = ord(c)
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"


def escape(text: Any) -> str:
    """``text`` as a single printable line: control characters (ESC, CR, LF, DEL, C1 codes),
    bidi overrides and other invisible format characters become ``\\xNN`` / ``\\uNNNN``."""
    s = str(text)
    if s.isprintable() and s.isascii():
        return s
    return "".join(c if c == " " or unicodedata.category(c) not in _UNSAFE_CATEGORIES and c.isprintable()
                    else _escape_char(c) for c in s)


def _safe_json(s: str) -> str:
    """JSON text with the characters JSON leaves raw but terminals interpret (C1 codes, bidi
    overrides, U+2028) escaped as ``\\uNNNN`` (they can only occur inside strings)."""
    if s.isascii():
        return s
    return "".join(c if c.isascii() or unicodedata.category(c) not in _UNSAFE_CATEGORIES
                   else "".join(f"\\u{u:04x}" for u in _utf16(c)) for c in s)


def _utf16(c: str) -> list[int]:
    b = c.encode("utf-16-be", "surrogatepass")
    return [int.from_bytes(b[i:i + 2], "big") for i in range(0, len(b), 2)]


def _jsonable(x: Any) -> Any:
    if isinstance(x, BaseResult):
        return x.json["res"]
    x = results_jsonable(x)
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def dumps(doc: Any, indent: int | None = None) -> str:
    """``doc`` (results, numpy values, paths included) as terminal-safe JSON text; NaN -> null."""
    return _safe_json(json.dumps(json_safe(_jsonable(doc)), indent=indent, ensure_ascii=False, allow_nan=False))


def positive_int(text: str) -> int:
    """argparse type for counts (``--batch-size``, ``--topk`` ...): an error names the flag, as
    argparse reports it, instead of a Python keyword from deeper down."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def format_far(far: float | None) -> str:
    """``1e-3`` for 0.001, ``1e-4``, ``5e-2`` ... (as thresholds are named in the docs)."""
    if far is None:
        return "-"
    m, e = f"{float(far):.0e}".split("e")
    return f"{m}e{int(e)}"


class Output:
    """What one command prints: human lines or JSON, with failures counted for the exit status."""

    def __init__(self, json_mode: bool = False, quiet: bool = False, stream: TextIO | None = None,
                 err: TextIO | None = None):
        self.json_mode = bool(json_mode)
        self.quiet = bool(quiet)
        self._out = stream
        self._err = err
        self.failed: list[tuple[str, str]] = []
        self.ok = 0

    @classmethod
    def of(cls, args: Any) -> "Output":
        """The output a parsed command line asks for (``--json``, ``--quiet``)."""
        return cls(getattr(args, "json", False), getattr(args, "quiet", False))

    @property
    def out(self) -> TextIO:
        return self._out or sys.stdout

    @property
    def err(self) -> TextIO:
        return self._err or sys.stderr

    def line(self, text: str) -> None:
        """A human line (not printed with ``--json``); pass names through :func:`escape`."""
        if not self.json_mode and not self.quiet:
            print(text, file=self.out, flush=True)

    def record(self, doc: Any, text: str | None = None) -> None:
        """One result of a stream: a JSON line with ``--json``, else ``text`` (when given)."""
        self.ok += 1
        if self.quiet:
            return
        if self.json_mode:
            print(dumps(doc), file=self.out, flush=True)
        elif text is not None:
            print(text, file=self.out, flush=True)

    def document(self, doc: Any, text: str) -> None:
        """The command's one result: ``doc`` as JSON with ``--json``, else the summary ``text``."""
        if self.quiet:
            return
        print(dumps(doc, indent=2) if self.json_mode else text, file=self.out, flush=True)

    def note(self, text: str) -> None:
        """A remark on stderr (progress, what was skipped and why)."""
        print(f"facefeat: {text}", file=self.err, flush=True)

    def fail(self, name: Any, reason: Any = None) -> None:
        """Report one bad input on stderr (escaped) and remember it; the run goes on.

        ``name`` may be an exception whose message already names the input."""
        if reason is None:
            name, reason = "", name
        name_s, reason_s = escape(name), escape(reason)
        self.failed.append((name_s, reason_s))
        self.note(f"{name_s}: {reason_s}" if name_s else reason_s)

    def count_failed(self, name: Any, reason: Any) -> None:
        """Count a bad input that was already reported (logged by the library as it was skipped)."""
        self.failed.append((escape(name), escape(reason)))

    def finish(self, total_ok: int | None = None) -> int:
        """Exit status of the run: 0, or 1 (after a count on stderr) when any input failed."""
        if not self.failed:
            return 0
        ok = self.ok if total_ok is None else total_ok
        self.note(f"{len(self.failed)} input(s) failed" + (f", {ok} succeeded" if ok else ""))
        return 1


def drain(out: Output, failures: list) -> None:
    """Report the failures a streaming call appended to ``failures`` since the last look (each once)."""
    while len(out.failed) < len(failures):
        out.fail(failures[len(out.failed)])


class _EscapingFormatter(logging.Formatter):
    """Log lines with the message escaped (file names in messages cannot forge lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = escape(record.message)
        return super().formatMessage(record)


def install_log_escaping() -> None:
    """Escape the messages of the root logger's handlers (the CLI's stderr log)."""
    for h in logging.getLogger().handlers:
        if not isinstance(h.formatter, _EscapingFormatter):
            fmt = h.formatter._fmt if h.formatter else "%(levelname)s %(name)s: %(message)s"
            h.setFormatter(_EscapingFormatter(fmt))


# -- one-line human summaries of the results ---------------------------------------------------
def _name(x: Any) -> str:
    return escape(x if x is not None else "<image>")


def feature_line(res: Any) -> str:
    """``photo.jpg: 128-d feature [0.0123, -0.0456, 0.0789, 0.0012, ...]``."""
    feat = res["feature"]
    head = ", ".join(f"{float(v):.4f}" for v in feat[:4])
    return f"{_name(res.get('input_path'))}: {len(feat)}-d feature [{head}{', ...' if len(feat) > 4 else ''}]"


def faces_line(name: Any, faces: list[dict], what: str = "face") -> str:
    """``photo.jpg: 2 faces (det 0.93, 0.88); 1 too small``."""
    small = sum(1 for f in faces if f.get("too_small"))
    scores = ", ".join(f"{float(f['det_score']):.2f}" for f in faces)
    n = len(faces)
    text = f"{_name(name)}: {n} {what}{'' if n == 1 else 's'}" + (f" (det {scores})" if n else "")
    return text + (f"; {small} too small" if small else "")


def recognition_line(res: Any) -> str:
    """``photo.jpg: 2 faces: Alice 0.712, unknown`` (or ``no face``)."""
    boxes = res["boxes"]
    if not boxes:
        return f"{_name(res.get('input_path'))}: no face"
    who = []
    for b in boxes:
        if b.get("too_small"):
            who.append("too small")
        elif b.get("labels"):
            who.append(f"{escape(b['labels'][0])} {float(b['rec_scores'][0]):.3f}")
        else:
            who.append("unknown")
    n = len(boxes)
    return f"{_name(res.get('input_path'))}: {n} face{'' if n == 1 else 's'}: {', '.join(who)}"


def verify_line(res: Any) -> str:
    """``same person: score 0.674 > threshold 0.365 (FAR 1e-3)`` or ``different people: ...`` (the
    comparison is the one match rule's, :func:`facefeat.thresholds.is_match`)."""
    op = res.get("operating_point") or {}
    if op.get("source") == "fixed":
        point = "fixed threshold"
    elif res.get("far") is not None:
        point = f"FAR {format_far(res['far'])}"
    else:
        point = escape(op.get("source") or "calibrated")
    l2 = str(op.get("metric_type") or "").upper() == "L2"
    same = bool(res["verified"])
    rel = ("<" if same else ">=") if l2 else (">" if same else "<=")
    verdict = "same person" if same else "different people"
    return f"{verdict}: score {float(res['score']):.3f} {rel} threshold {float(res['threshold']):.3f} ({point})"


def info_line(doc: dict) -> str:
    """``runtime (auto, cpu): openvino fp32; CPU features: avx2, ...[; model SFace 128-d: ...]``."""
    r = doc.get("resolved") or {}
    text = (f"runtime: {r['error']}" if "error" in r else
            f"runtime: {r.get('backend')} {r.get('precision')} on {r.get('device')}")
    text += f"; CPU features: {', '.join(map(str, doc.get('cpu_features') or [])) or '-'}"
    m = doc.get("model")
    if isinstance(m, dict):
        text += f"; model {m.get('model_name')} {m.get('embedding_size')}-d on {m.get('backend')} {m.get('precision')}"
    return escape(text) + " (--json for everything)"


def report_doc(report: Any) -> dict:
    """A run report (a dataclass such as embed-dataset's EmbedReport) as a JSON-ready dict."""
    import dataclasses

    return dataclasses.asdict(report) if dataclasses.is_dataclass(report) else dict(vars(report))


def index_line(index: Any) -> str:
    """``faiss Flat IP index of 40 sample(s), 20 people (SFace)``."""
    info = index.info()
    return (f"{info.get('backend')} {info.get('index_type')} {info.get('metric_type')} index of "
            f"{info.get('count')} sample(s), {info.get('num_labels')} people ({info.get('model_name')})")


def stats_line(stats: Any) -> str:
    """``images 120, entries 118, no_face 2`` from a counts dict."""
    return ", ".join(f"{k} {v}" for k, v in stats.items()) if isinstance(stats, dict) else str(stats)


def video_line(ev: dict) -> str | None:
    """Human lines for video events: finished tracks and the summary (frames only with --json)."""
    if ev.get("event") == "track":
        who = ev.get("label") or "unknown"
        return escape(f"track {ev.get('track_id')}: {who}, frames {ev.get('first_frame')}..{ev.get('last_frame')} "
                      f"({ev.get('start')}s..{ev.get('end')}s)")
    if ev.get("event") == "summary":
        return escape(", ".join(f"{k} {v}" for k, v in ev.items() if k != "event" and not isinstance(v, (list, dict))))
    return None


__all__ = ["Output", "drain", "dumps", "escape", "faces_line", "feature_line", "format_far", "index_line", "info_line",
           "install_log_escaping", "positive_int", "recognition_line", "report_doc", "stats_line", "video_line",
           "verify_line"]
