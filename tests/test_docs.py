"""Code shown in docs/internals.md is the code: a worked example copied from the docs must behave as the
library does (an older copy read ``ctx.features``, the cross-fitted teacher-side rows, for a student-side
model)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INTERNALS = ROOT / "docs" / "internals.md"
PIPELINE = ROOT / "src" / "mtpkdot" / "pipeline"


def python_blocks(text: str) -> list[str]:
    return [part.split("```", 1)[0] for part in text.split("```python\n")[1:]]


def flat(code: str) -> str:
    """Lines without their indentation (a block in the docs may be dedented from a tuple in the code)."""
    return "\n".join(line.strip() for line in code.strip().splitlines())


def test_the_worked_stage_example_is_the_code():
    doc = INTERNALS.read_text()
    section = doc.split("### Adding a stage: a worked example", 1)[1].split("\n#", 1)[0]
    blocks = python_blocks(section)
    assert len(blocks) == 3, "the worked example shows the stage code, its settings and its declaration"
    code = flat((PIPELINE / "stages" / "lower_bound.py").read_text())
    graph = flat((PIPELINE / "graph.py").read_text())
    assert flat(blocks[0]) in code, "docs/internals.md step 1 differs from stages/lower_bound.py"
    for block in blocks[1:]:
        assert flat(block) in graph, "docs/internals.md step 2 differs from graph.py"
