"""The ``done`` marker of a stage: what the finished stage wrote and what it was built from.

Line 1 is the hash of the stage's config section (all a marker held before outputs were recorded).
Then ``output <file> <hash>`` per file the stage wrote (its ``best.pt``, its ``test.json``...) and
``input <stage> <hash>`` per stage it read, hashed as that stage's own marker: a marker holds the
hashes of its outputs and inputs, so a change anywhere upstream reaches every stage after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Marker:
    section: str
    outputs: Mapping[str, str] = field(default_factory=dict)
    inputs: Mapping[str, str] = field(default_factory=dict)

    @property
    def legacy(self) -> bool:
        """Written before outputs were recorded: the config hash alone."""
        return not self.outputs

    def text(self) -> str:
        lines = [self.section]
        lines += [f"output {name} {h}" for name, h in self.outputs.items()]
        lines += [f"input {stage} {h}" for stage, h in self.inputs.items()]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> Marker:
        first, *rest = text.splitlines() or [""]
        kinds: dict[str, dict[str, str]] = {"output": {}, "input": {}}
        for line in rest:
            parts = line.split(" ")
            if len(parts) != 3 or parts[0] not in kinds:
                raise ValueError(f"not a done marker line: {line!r}")
            kinds[parts[0]][parts[1]] = parts[2]
        return cls(first.strip(), kinds["output"], kinds["input"])
