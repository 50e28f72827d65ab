"""MkDocs hook: the model zoo table, rendered at build time from the registry
(:mod:`facefeat.registry`), the one source - as timm does. A page writes the marker
``<!-- facefeat:model-table -->`` where the table goes; ``<!-- facefeat:thresholds -->`` gives the
calibrated operating points of each model that has them.
"""

from __future__ import annotations

from typing import Any

TABLE_MARKER = "<!-- facefeat:model-table -->"
THRESHOLDS_MARKER = "<!-- facefeat:thresholds -->"


def _preprocess(spec: Any) -> str:
    p = spec.preprocess
    if getattr(p, "normalize_in_graph", False):
        norm = "0..255, normalised in the graph"
    else:
        mean = sorted(set(p.mean))
        std = sorted(set(p.std))
        norm = f"(x − {mean[0]:g}) / {std[0]:g}" if len(mean) == 1 and len(std) == 1 else f"mean {p.mean}, std {p.std}"
    return norm


def _weights(spec: Any) -> str:
    w = spec.weights
    where = {"package": "from an installed package", "url": "downloaded once"}.get(w.kind, w.kind)
    return f"`{w.filename}`<br><small>{where}</small>"


def model_table() -> str:
    from facefeat.registry import get_spec, list_models

    rows = ["| model | dim | input | preprocessing | default weights | licence | reported accuracy | "
            "calibrated thresholds |",
            "|---|---|---|---|---|---|---|---|"]
    for name in list_models():
        s = get_spec(name)
        acc = ", ".join(f"{k} {v}" for k, v in s.accuracy.items() if k != "source")
        src = s.accuracy.get("source", "")
        h, w = s.input_size[:2] if len(s.input_size) >= 2 else (s.input_size[0], s.input_size[0])
        rows.append(
            f"| **{s.name}** | {s.embedding_size} | {h}×{w} {getattr(s.preprocess, 'channel_order', 'RGB')} | "
            f"{_preprocess(s)} | {_weights(s)} | {s.license} | {acc}"
            f"{f' <br><small>{src}</small>' if src else ''} | {'yes' if s.thresholds else 'no (0.4 default)'} |")
    return "\n".join(rows) + "\n"


def thresholds_tables() -> str:
    from facefeat.registry import get_spec, list_models

    out = []
    for name in list_models():
        t = get_spec(name).thresholds
        if not t:
            continue
        data = t.get("data", {})
        out += [f"**{name}** ({t.get('metric', 'cosine')} similarity; measured on {data.get('name', '?')}, "
                f"{data.get('measured', '')}; `{t.get('source', '')}`)", "",
                "| 1:1 operating point | threshold | TAR | accuracy |", "|---|---|---|---|"]
        for point, v in t.get("verification", {}).items():
            out.append(f"| {point} | {v['threshold']:.3f} | {v.get('tar', '') if 'tar' in v else '-'} | "
                       f"{v.get('accuracy', '-')} |")
        out += ["", "| 1:N gallery size | operating point | threshold | DIR |", "|---|---|---|---|"]
        for g in t.get("identification", []):
            for point, v in g.items():
                if isinstance(v, dict):
                    out.append(f"| {g['gallery_size']:,} | {point} | {v['threshold']:.3f} | {v.get('dir', '-')} |")
        out.append("")
    return "\n".join(out) or "No model in the registry carries calibrated thresholds.\n"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if TABLE_MARKER in markdown:
        markdown = markdown.replace(TABLE_MARKER, model_table())
    if THRESHOLDS_MARKER in markdown:
        markdown = markdown.replace(THRESHOLDS_MARKER, thresholds_tables())
    return markdown
