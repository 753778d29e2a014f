"""Stack-file keys and the spec's dataclasses: the camelCase spelling of a field, where a pydantic
error location points (the tagged union's member is in it, the file does not spell it), and the
field a location names. config.py words its problems with these; partial.py sets bad values aside
by them.
"""
from __future__ import annotations

import dataclasses
import re
import typing
from typing import Any

from pydantic.fields import FieldInfo

from peaknight.provisioners.settings import PROVISIONER_SETTINGS
from peaknight.spec.stack import StackSpec
from peaknight.spec.weights_from import WEIGHTS_FROM

NAMESPACE = "peaknight"
# The tagged unions of the spec, by the key that holds one: kind -> member class.
TAGGED: dict[str, dict[str, type]] = {"provisioner": PROVISIONER_SETTINGS, "weightsFrom": WEIGHTS_FROM}


def alias(field: dataclasses.Field) -> str:
    """The stack file's spelling of a field: camelCase."""
    head, *rest = field.name.split("_")
    return head + "".join(w.capitalize() for w in rest)


def is_tag(loc: tuple, i: int) -> bool:
    """Pydantic puts the chosen member of a tagged union (`provisioner.<kind>`) in the location."""
    return i > 0 and isinstance(loc[i - 1], str) and loc[i] in TAGGED.get(loc[i - 1], {})


def untagged(loc: tuple) -> tuple:
    """The location as the stack file spells it: without the union's tag."""
    return tuple(part for i, part in enumerate(loc) if not is_tag(loc, i))


def path(loc: tuple) -> str:
    """A location as problems print it: `peaknight:models[2].gpu` (`[*]` for every item)."""
    out = NAMESPACE + ":"
    for i, part in enumerate(untagged(loc)):
        out += f"[{part}]" if isinstance(part, int) or part == "*" else ("." if i else "") + str(part)
    return out


def parse_path(text: str) -> tuple:
    """path()'s inverse for what config's checks print (names, indices and `[*]`)."""
    body = text[len(NAMESPACE) + 1:] if text.startswith(NAMESPACE + ":") else text
    return tuple(int(i) if i.isdigit() else (i or name) for name, i in re.findall(r"([^.\[\]]+)|\[(\d+|\*)\]", body))


def dataclass_in(tp: Any) -> Any:
    """The dataclass a field's type holds (itself, an Optional's, a tuple's items'), or None."""
    if dataclasses.is_dataclass(tp):
        return tp
    for arg in typing.get_args(tp):
        found = dataclass_in(arg)
        if found is not None:
            return found
    return None


def class_at(loc: tuple) -> Any:
    """The dataclass of the value at `loc` (StackSpec at the top), or None where it is none."""
    cls: Any = StackSpec
    for i, part in enumerate(loc):
        if isinstance(part, int):
            continue
        if is_tag(loc, i):
            cls = TAGGED[loc[i - 1]][part]
            continue
        field = _field(cls, part)
        if field is None:
            return None
        cls = dataclass_in(typing.get_type_hints(cls)[field.name])
    return cls


def field_at(loc: tuple) -> dataclasses.Field | None:
    """The field `loc` names last; None where it ends at a list item or names no field."""
    if not loc or isinstance(loc[-1], int) or is_tag(loc, len(loc) - 1):
        return None
    return _field(class_at(loc[:-1]), loc[-1])


def has_default(field: dataclasses.Field) -> bool:
    """Whether a stack may leave the field out (pydantic keeps a Field(...) as the default)."""
    if isinstance(field.default, FieldInfo):
        return not field.default.is_required()
    return field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING


def keys_at(loc: tuple) -> list[str]:
    """Allowed keys of the dataclass at `loc` (for "did you mean")."""
    cls = class_at(loc)
    return [alias(f) for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []


def _field(cls: Any, name: Any) -> dataclasses.Field | None:
    if not dataclasses.is_dataclass(cls):
        return None
    return next((f for f in dataclasses.fields(cls) if alias(f) == name), None)
