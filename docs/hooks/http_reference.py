"""MkDocs hook: the HTTP reference page (``reference/http.md``), rendered at build time from the
OpenAPI document of the service itself.

The app factory (:func:`facefeat.serving.app.create_app`) is called offline on a throw-away storage
folder; no model is loaded (that happens at server start-up), only ``app.openapi()`` is read. So the
page lists exactly the endpoints, fields, limits, key roles and error statuses the code declares.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

PAGE = "reference/http.md"
_METHODS = ("get", "post", "put", "patch", "delete")
_ROLE_TEXT = {
    "admin": "an **admin** key when the server has keys",
    "read": "any key (read-only is enough) when the server has keys",
    None: "no key",
}


def _openapi() -> tuple[dict, Any]:
    from facefeat.serving.app import create_app, required_role

    with tempfile.TemporaryDirectory(prefix="facefeat-docs-") as storage:
        return create_app(storage).openapi(), required_role


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _type(schema: dict) -> str:
    """A short readable type of a JSON schema: ``string``, ``integer (0..100)``, ``list of Face`` ..."""
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        return f"[{name}](#{name.lower()})"
    if "anyOf" in schema:
        parts = [_type(s) for s in schema["anyOf"] if s.get("type") != "null"]
        return " or ".join(parts) or "null"
    if "const" in schema:
        return f'`"{schema["const"]}"`'
    if "enum" in schema:
        return " | ".join(f"`{v}`" for v in schema["enum"])
    t = schema.get("type", "any")
    if t == "array":
        return "list of " + _type(schema.get("items", {}))
    bounds = []
    for lo, hi in (("minimum", "maximum"), ("exclusiveMinimum", "exclusiveMaximum")):
        if lo in schema or hi in schema:
            bounds.append(f"{_num(schema.get(lo, ''))}..{_num(schema.get(hi, ''))}")
    if "minLength" in schema or "maxLength" in schema:
        bounds.append(f"{schema.get('minLength', 0)}..{schema.get('maxLength', '')} chars")
    if "pattern" in schema:
        bounds.append(f"`{schema['pattern']}`")
    return t + (f" ({', '.join(bounds)})" if bounds else "")


def _num(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return f"{v:,}" if isinstance(v, int) and v > 99_999 else str(v)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _fields_table(schema: dict) -> list[str]:
    props = schema.get("properties") or {}
    if not props:
        return ["(no fields)", ""]
    required = set(schema.get("required") or [])
    rows = ["| field | type | required | description |", "|---|---|---|---|"]
    for name, prop in props.items():
        desc = prop.get("description", "")
        if "default" in prop and prop["default"] not in (None, False, [], {}):
            desc += f" (default `{json.dumps(prop['default'])}`)"
        rows.append(f"| `{name}` | {_cell(_type(prop))} | {'yes' if name in required else ''} | {_cell(desc)} |")
    return rows + [""]


def _result_schema(op: dict, schemas: dict) -> str | None:
    """The ``result`` model of an endpoint's 200 envelope (``Envelope_X_`` -> ``X``)."""
    content = (op.get("responses", {}).get("200", {}).get("content") or {}).get("application/json") or {}
    ref = (content.get("schema") or {}).get("$ref")
    if not ref:
        return None
    env = schemas.get(_ref_name(ref), {})
    result = (env.get("properties") or {}).get("result") or {}
    for s in result.get("anyOf", [result]):
        if "$ref" in s:
            return _ref_name(s["$ref"])
    return None


def _referenced(name: str, schemas: dict, seen: set[str]) -> None:
    """Every schema reachable from ``name`` (nested models), into ``seen``."""
    if name in seen or name not in schemas:
        return
    seen.add(name)
    for ref in _refs(schemas[name]):
        _referenced(ref, schemas, seen)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        out = [_ref_name(node["$ref"])] if "$ref" in node else []
        for v in node.values():
            out += _refs(v)
        return out
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _example_body(schema: dict, schemas: dict) -> dict:
    """A minimal request body for the curl line: the required fields with placeholder values."""
    body: dict = {}
    for name in schema.get("required") or []:
        prop = (schema.get("properties") or {}).get(name, {})
        t = prop.get("type")
        if t == "array":
            ref = (prop.get("items") or {}).get("$ref")
            body[name] = [_example_body(schemas[_ref_name(ref)], schemas) if ref else "..."]
        elif t == "integer":
            body[name] = 0
        else:
            body[name] = "<base64 JPEG>" if "image" in name.lower() else f"<{name}>"
    return body


def render(spec: dict, required_role: Any) -> str:
    """The Markdown of the reference page."""
    schemas = spec.get("components", {}).get("schemas", {})
    info = spec.get("info", {})
    out = [
        "# HTTP reference",
        "",
        "<!-- generated at build time by docs/hooks/http_reference.py from the service's OpenAPI "
        "document; edit the code, not this page -->",
        "",
        f"**{info.get('title', '')}**, version {info.get('version', '')}. {info.get('description', '')}",
        "",
        "Every response is the envelope `{\"logId\", \"errorCode\", \"errorMsg\", \"result\"}`: `errorCode` "
        "is 0 on success and the HTTP status otherwise, with `result` null and `errorMsg` saying what is "
        "wrong (for a 422, the JSON list of problems). A running server serves the same document at "
        "`/openapi.json` and an interactive page at `/docs`. How to start it, keys and limits: "
        "[the service](../guides/service.md).",
        "",
        "| method | path | key | summary |",
        "|---|---|---|---|",
    ]
    ops = [(path, m, item[m]) for path, item in spec["paths"].items() for m in _METHODS if m in item]
    for path, method, op in ops:
        role = required_role(method.upper(), path)
        out.append(f"| {method.upper()} | [`{path}`](#{_anchor(method, path)}) | {role or '-'} | "
                   f"{_cell(op.get('summary', ''))} |")
    out.append("")
    used: set[str] = set()
    for path, method, op in ops:
        role = required_role(method.upper(), path)
        out += [f"## {method.upper()} {path} {{#{_anchor(method, path)}}}", ""]
        if op.get("description"):
            out += [op["description"].strip(), ""]
        out += [f"*{', '.join(op.get('tags', []))}* · needs {_ROLE_TEXT.get(role, role)}.", ""]
        params = op.get("parameters") or []
        if params:
            out += ["**Query parameters**", "", "| name | type | required | description |", "|---|---|---|---|"]
            for p in params:
                out.append(f"| `{p['name']}` | {_cell(_type(p.get('schema', {})))} | "
                           f"{'yes' if p.get('required') else ''} | {_cell(p.get('description', ''))} |")
            out.append("")
        body_ref = (((op.get("requestBody") or {}).get("content") or {}).get("application/json") or {}) \
            .get("schema", {}).get("$ref")
        if body_ref:
            name = _ref_name(body_ref)
            _referenced(name, schemas, used)
            out += [f"**Request body** ({name})", ""] + _fields_table(schemas[name])
            example = json.dumps(_example_body(schemas[name], schemas))
            out += ["```bash", f"curl -s -X POST http://127.0.0.1:8080{path} \\",
                    "     -H 'Content-Type: application/json' \\",
                    f"     -d '{example}'", "```", ""]
        elif method == "get":
            query = "&".join(f"{p['name']}=..." for p in params if p.get("required"))
            out += ["```bash", f"curl -s 'http://127.0.0.1:8080{path}{'?' + query if query else ''}'", "```", ""]
        result = _result_schema(op, schemas)
        if result:
            _referenced(result, schemas, used)
            out += [f"**Result** ({result})", ""] + _fields_table(schemas[result])
        else:
            ok = op.get("responses", {}).get("200", {})
            kinds = ", ".join(k for k in (ok.get("content") or {}) if k != "application/json") or "JSON"
            out += [f"**Result**: {ok.get('description', '')} ({kinds})", ""]
        errors = [(code, r.get("description", "")) for code, r in op.get("responses", {}).items()
                  if code != "200"]
        if errors:
            out += ["**Errors**: " + "; ".join(f"`{c}` {_cell(d)}" for c, d in errors), ""]
    nested = sorted({r for n in used for r in _refs(schemas[n])})  # every model a field links to
    if nested:
        out += ["## Nested objects", ""]
        for name in nested:
            out += [f"### {name} {{#{name.lower()}}}", ""] + _fields_table(schemas[name])
    return "\n".join(out) + "\n"


def _anchor(method: str, path: str) -> str:
    return (method + path).replace("/", "-").strip("-").lower()


def on_config(config: Any) -> Any:
    """Document the facefeat of this checkout (first on ``sys.path``), installed or not."""
    root = str(Path(config.config_file_path).resolve().parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    return config


def on_files(files: Files, config: Any) -> Files:
    spec, role = _openapi()
    files.append(File.generated(config, PAGE, content=render(spec, role)))
    return files
