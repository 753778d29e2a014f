"""The pinned CRDs' validation rules (`x-kubernetes-validations`), evaluated by a CEL engine.

The API server runs every rule of a custom resource's schema on create, with `self` bound to the
node the rule sits on, after defaulting. This module does the same with cel-python (a
pure-Python implementation of the CEL specification), so a rule the kit breaks fails `validate`
with the CRD's own message instead of the apply. What the engine cannot evaluate is said, by rule:
Kubernetes' CEL extensions (`quantity()`, `isURL()`, `format.*`, list and string libraries
cel-python lacks) are undeclared functions to it. Transition rules (`oldSelf`) compare an update
with the stored object; the API server skips them on create, and so does this module.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Iterator

import celpy
from celpy.evaluation import CELEvalError

_UNDECLARED = re.compile(r"undeclared reference to '([^']+)'")
_NO_SUCH_MEMBER = re.compile(r"no such member in mapping: \\*'([^'\\]+)")


@dataclass(frozen=True)
class Unevaluated:
    """A rule the engine could not evaluate on an object: where it sits and why."""

    kind: str
    path: str
    rule: str
    reason: str = field(compare=False)   # one rule, one line: short-circuits may fail it at either call

    def __str__(self) -> str:
        return f"{self.kind} {self.path}: rule {self.rule!r} not evaluated ({self.reason})"


@dataclass
class Result:
    problems: list[str]
    unevaluated: list[Unevaluated]


_ENV = celpy.Environment()


@cache
def _program(rule: str) -> Any:
    """Compiled once per rule: a fleet evaluates the same few hundred rules thousands of times."""
    return _ENV.program(_ENV.compile(rule))


def _defaulted(schema: dict[str, Any], value: Any) -> Any:
    """The object as the API server sees it when it runs the rules: every absent field with a
    schema default set to it, at every depth (a rule on a list reads its items' defaulted fields)."""
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        out = {k: p["default"] for k, p in properties.items() if isinstance(p, dict) and "default" in p}
        for key, child in value.items():
            sub = properties.get(key, extra if isinstance(extra, dict) else None)
            out[key] = _defaulted(sub, child) if isinstance(sub, dict) else child
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_defaulted(schema["items"], child) for child in value]
    return value


def _absent(err: CELEvalError) -> str | None:
    """The field a rule read that the object does not set: the API server's evaluation fails on it
    too ("no such key"), and refuses the object."""
    match = _NO_SUCH_MEMBER.search(repr(err.args))
    return match.group(1) if match and not _UNDECLARED.search(repr(err.args)) else None


def _reason(err: CELEvalError) -> str:
    """Why the engine gave up: the function it lacks where it names one (an error inside an
    argument surfaces as a failed overload of the outer call; the innermost names the function)."""
    match = _UNDECLARED.search(repr(err.args))
    if match:
        return f"Kubernetes CEL extension {match.group(1)}() unknown to cel-python"
    if "no such overload" in repr(err.args) or "no matching overload" in repr(err.args):
        return "a Kubernetes CEL extension overload unknown to cel-python"
    return str(err.args[0] if err.args else err)[:120]


def _rules(kind: str, schema: dict[str, Any], value: Any, path: str, result: Result) -> None:
    for entry in schema.get("x-kubernetes-validations") or ():
        rule = entry.get("rule", "")
        if "oldSelf" in rule:
            continue
        where = re.sub(r"\[\d+\]", "[*]", path) or "."
        message = entry.get("message") or f"failed rule: {rule}"
        try:
            verdict = _program(rule).evaluate({"self": celpy.json_to_cel(value)})
        except CELEvalError as err:
            verdict = err
        if isinstance(verdict, CELEvalError):
            if (field := _absent(verdict)) is not None:
                result.problems.append(f"{path or '.'}: {message} (no such key: {field})")
            else:
                result.unevaluated.append(Unevaluated(kind, where, rule, _reason(verdict)))
        elif verdict != celpy.celtypes.BoolType(True):
            result.problems.append(f"{path or '.'}: {message}")


def _walk(kind: str, schema: dict[str, Any], value: Any, path: str, result: Result) -> None:
    _rules(kind, schema, value, path, result)
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, child in value.items():
            sub = properties.get(key, extra if isinstance(extra, dict) else None)
            if isinstance(sub, dict):
                _walk(kind, sub, child, f"{path}.{key}" if path else key, result)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, child in enumerate(value):
            _walk(kind, schema["items"], child, f"{path}[{i}]", result)


def check(manifest: dict[str, Any], schema: dict[str, Any]) -> Result:
    """Every CEL rule of `schema` (the object's CRD version's openAPIV3Schema) on `manifest`."""
    result = Result([], [])
    _walk(str(manifest.get("kind", "")), schema, _defaulted(schema, manifest), "", result)
    return result


def rules(schema: dict[str, Any]) -> Iterator[str]:
    """Every rule in a schema (for counting what the engine covers)."""
    yield from (e.get("rule", "") for e in schema.get("x-kubernetes-validations") or ())
    for sub in (schema.get("properties") or {}).values():
        if isinstance(sub, dict):
            yield from rules(sub)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from rules(schema[key])
