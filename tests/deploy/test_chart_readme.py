"""charts/dask-operator/README.md documents every value of values.yaml, with its default, and
values.schema.json knows every value."""

from __future__ import annotations

import json
import re

import yaml

from chartlib import CHART

ROW = re.compile(r"^\|\s*`(?P<key>[^`]+)`\s*\|\s*(?P<type>[^|]+?)\s*\|\s*`(?P<default>.*)`\s*\|\s*(?P<desc>.+?)\s*\|\s*$")
TYPES = {"string": str, "int": int, "bool": bool, "list": list, "object": dict, "int or string": (int, str)}


def leaves(value, prefix=""):
    """Flattened leaf keys: a non-empty mapping is descended into; anything else is a leaf."""
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from leaves(v, f"{prefix}{k}.")
    else:
        yield prefix[:-1], value


def values_leaves():
    return dict(leaves(yaml.safe_load((CHART / "values.yaml").read_text())))


def readme_rows():
    text = (CHART / "README.md").read_text()
    section = text.split("## Values", 1)[1]
    rows = {}
    for line in section.splitlines():
        m = ROW.match(line)
        if m:
            assert m["key"] not in rows, f"README lists {m['key']} twice"
            rows[m["key"]] = m
    return rows


def test_readme_documents_every_value_and_nothing_else():
    vals, rows = values_leaves(), readme_rows()
    missing = sorted(set(vals) - set(rows))
    extra = sorted(set(rows) - set(vals))
    assert not missing, f"values.yaml keys missing from the README's table: {missing}"
    assert not extra, f"README rows for keys values.yaml does not have: {extra}"


def test_readme_defaults_and_types_are_values_yaml():
    vals, rows = values_leaves(), readme_rows()
    wrong = []
    for key, m in rows.items():
        if key not in vals:
            continue
        try:
            default = json.loads(m["default"])
        except json.JSONDecodeError:
            wrong.append(f"{key}: README default {m['default']} is not JSON")
            continue
        if default != vals[key] or type(default) is not type(vals[key]):
            wrong.append(f"{key}: README default {m['default']} but values.yaml has {json.dumps(vals[key])}")
        if m["type"] not in TYPES:
            wrong.append(f"{key}: unknown type {m['type']!r}")
        elif not isinstance(vals[key], TYPES[m["type"]]):
            wrong.append(f"{key}: README type {m['type']} for {vals[key]!r}")
        if len(m["desc"]) <= 10:
            wrong.append(f"{key}: no description")
    assert not wrong, "README's values table disagrees with values.yaml:\n" + "\n".join(wrong)


def test_schema_knows_every_value():
    schema = json.loads((CHART / "values.schema.json").read_text())
    for key in values_leaves():
        node = schema
        for part in key.split("."):
            props = node.get("properties", {})
            assert part in props, f"values.schema.json has no property for {key}"
            node = props[part]
        assert "description" in node, f"values.schema.json: {key} has no description"


def test_defaults_pass_the_schema_types():
    """Each default has the type the schema gives it (Helm checks the whole, this names the key)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    py = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list, "object": dict}
    for key, value in values_leaves().items():
        node = schema
        for part in key.split("."):
            node = node["properties"][part]
        types = node.get("type", [])
        types = [types] if isinstance(types, str) else types
        if types:
            ok = any(isinstance(value, py.get(t, float)) for t in types) and not isinstance(value, bool) or (
                "boolean" in types and isinstance(value, bool))
            assert ok, f"{key}: default {value!r} is not of the schema's type {types}"
