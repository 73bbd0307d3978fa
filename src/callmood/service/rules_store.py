"""The alert rules the service applies: the rules file in data_dir, or the default rules.

`PUT /api/rules` replaces the file atomically; workers read the current rules at
the start of each job, so an edit applies to the next call without a restart.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import yaml

from callmood.alerts import DEFAULT_RULES, RuleSet


class RulesStore:
    """Read and replace the service's alert rules (thread-safe; cached until the file changes).

    Parameters
    ----------
    path
        The rules YAML; when it does not exist the default rules apply.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._cached: tuple[float, RuleSet] | None = None

    def current(self) -> RuleSet:
        """The rules in force (raises RulesError when the file was edited into nonsense)."""
        with self._lock:
            try:
                modified = self.path.stat().st_mtime_ns
            except FileNotFoundError:
                return DEFAULT_RULES
            if self._cached is None or self._cached[0] != modified:
                self._cached = (modified, RuleSet.from_yaml(self.path))
            return self._cached[1]

    def is_default(self) -> bool:
        """Whether no rules file exists, so the default rules apply."""
        return not self.path.exists()

    def replace(self, rules: RuleSet) -> RuleSet:
        """Write `rules` as the new rules file (atomically: readers see old or new, never half)."""
        text = to_yaml(rules)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        temporary.write_text(text, encoding="utf-8")
        with self._lock:
            os.replace(temporary, self.path)
            self._cached = None
        return self.current()


def to_yaml(rules: RuleSet) -> str:
    """The rules as YAML in the format `RuleSet.from_yaml` reads."""
    document = rules.model_dump(mode="json", exclude_none=True)
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
