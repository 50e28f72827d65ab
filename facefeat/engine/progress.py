"""What a long training run tells the person waiting: the time left, and how to go on after Ctrl-C."""

from __future__ import annotations

from pathlib import Path

from facefeat.engine.checkpoint import CKPT_NAME


def eta_note(elapsed: float, done: int, left: int) -> str:
    """``; ETA 12m30s for 3 more epoch(s)`` from the epochs run so far (validation included)."""
    if left <= 0 or done <= 0:
        return ""
    secs = int(round(elapsed / done * left))
    h, rem = divmod(secs, 3600)
    m, sec = divmod(rem, 60)
    text = f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s" if m else f"{sec}s"
    return f"; ETA {text} for {left} more epoch(s)"


def resume_hint(output: Path) -> str:
    """What to run to go on after an interrupt: the saved config, resumed from ``latest/``."""
    config = output / "config.yaml"
    latest = output / "latest" / CKPT_NAME
    if not latest.is_file():
        return (f"interrupted before the first checkpoint (written after each Train.save_interval epochs); "
                f"to start again: facefeat -c {config}")
    return (f"interrupted; to resume from the last checkpoint ({latest.parent}): "
            f"facefeat -c {config} -o Train.resume_path={latest.parent}")


__all__ = ["eta_note", "resume_hint"]
