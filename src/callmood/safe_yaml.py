"""Reading YAML that others wrote (configs, rules files, rules documents), with bounds.

`yaml.safe_load` builds no objects from tags, but it still recurses once per level of
nesting (thousands of ``[`` end in a RecursionError) and it shares aliased nodes, so a
"billion laughs" document of a few hundred bytes holds 10**9 values once anything walks,
copies or prints it (a validation message showing the value is enough). `load_yaml`
refuses both, as a `yaml.YAMLError`, so callers report it like any other invalid YAML.
"""

from __future__ import annotations

from typing import Any

import yaml

#: Deepest nesting of lists and mappings a document may have (configs need under 10).
MAX_DEPTH = 64
#: Most values a document may hold with every alias expanded (rules files hold hundreds).
MAX_VALUES = 100_000


class YamlParseError(yaml.YAMLError):
    """A YAML document PyYAML scans but cannot build (a value past what Python converts)."""


class YamlLimitError(yaml.YAMLError):
    """A YAML document nests too deeply, expands too far through aliases, or contains itself."""


def load_yaml(text: str | bytes) -> Any:
    """Parse one YAML document like `yaml.safe_load`, within MAX_DEPTH and MAX_VALUES.

    Raises
    ------
    yaml.YAMLError
        Invalid YAML, or a `YamlLimitError` saying which bound the document breaks.
    """
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise YamlLimitError(f"the document nests deeper than {MAX_DEPTH} levels") from None
    except (ValueError, OverflowError) as error:
        # PyYAML's own failures on input it scanned: chr() of an escape past U+10FFFF
        # (ValueError or OverflowError), int() of a 4300-digit number, undecodable bytes.
        raise YamlParseError(f"cannot read the document ({error})") from None
    _count_values(data, depth=0, counted={}, open_nodes=set())
    return data


def _count_values(node: Any, *, depth: int, counted: dict[int, int], open_nodes: set[int]) -> int:
    """The number of values in `node` with aliases expanded; each shared node is walked once."""
    if not isinstance(node, list | dict):
        return 1
    if depth > MAX_DEPTH:
        raise YamlLimitError(f"the document nests deeper than {MAX_DEPTH} levels")
    key = id(node)
    if key in open_nodes:
        raise YamlLimitError("the document contains itself (an alias inside its own anchor)")
    if key not in counted:
        open_nodes.add(key)
        children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        total = 1
        for child in children:
            total += _count_values(child, depth=depth + 1, counted=counted, open_nodes=open_nodes)
            if total > MAX_VALUES:
                raise YamlLimitError(
                    f"the document expands to more than {MAX_VALUES} values through its "
                    "aliases (a 'billion laughs' document?)"
                )
        open_nodes.discard(key)
        counted[key] = total
    return counted[key]
