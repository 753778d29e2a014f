"""The `peaknight:` config as a Pulumi program sees it, in the shape the stack file has.

The CLI validates the stack file's every `peaknight:` key (config.read_stack_file + config.parse);
the program must reject exactly the same, so it cannot ask pulumi.Config for the keys it knows:
it lists every key Pulumi passed (unknown ones like `peaknight:edgez` included) and hands
config.parse what the file would have held. Pulumi gives a secret's value decrypted and says
separately that it is secret, so a secret kubeconfig (or cloud credential) becomes the file's `{secure: ...}` shape and
a plain one stays plain text, which parse rejects as the CLI does.
"""
from __future__ import annotations

import json
from typing import Any

from pulumi.runtime import config as runtime_config

from peaknight.spec import config

SECRET_PLACEHOLDER = {"secure": "(set)"}  # the value itself never enters the spec


def _all_keys() -> dict[str, Any]:
    """Every config key the engine passed: the program's config map and PULUMI_CONFIG."""
    return {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}


def _is_secret(key: str) -> bool:
    """Secret as the engine marked it: in the program's secret keys or PULUMI_CONFIG_SECRET_KEYS."""
    return runtime_config.is_config_secret(key) or key in runtime_config.get_config_secret_keys_env()


def raw_config(source: str) -> dict[str, Any]:
    """The `peaknight:` keys, prefix stripped, values decoded like the stack file's YAML."""
    prefix = config.NAMESPACE + ":"
    raw: dict[str, Any] = {}
    for key, text in _all_keys().items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if name.startswith(config.SECRET_PREFIXES):
            raw[name] = SECRET_PLACEHOLDER if _is_secret(key) else text
            continue
        try:
            raw[name] = json.loads(text) if isinstance(text, str) else text
        except json.JSONDecodeError:
            raw[name] = text
        except RecursionError:   # the stack file's depth bound, for a value Pulumi hands over as JSON
            raise config.ConfigError([config.Problem(source, key, f"at most {config.MAX_DEPTH} levels of "
                                                     "nesting", "more")]) from None
    if not raw:
        raise config.ConfigError([config.Problem(source, "config", f"keys under the '{config.NAMESPACE}:' namespace",
                                                 "none")])
    return raw
