"""The Bahasa Indonesia operator pages show the same commands as their English originals.

Prose is translated; commands are not. So each page's fenced blocks must match its
original's, in order: the VM guide's byte for byte, the operator guide's up to what is
translated inside a block (shell comments, ``<placeholders>``). A command changed on one
side only fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
FENCE = re.compile(r"^```[^\n]*\n.*?^```$", re.MULTILINE | re.DOTALL)
VM_SECTION = "## On a VM without containers"


def blocks(text: str) -> list[str]:
    return FENCE.findall(text)


def without_translated_parts(block: str) -> str:
    """Drop shell comments and placeholders, which the translation may word differently."""
    lines = []
    for line in block.splitlines():
        line = re.sub(r"\s+#\s.*$", "", line)
        lines.append(re.sub(r"<[^>]*>", "<>", line).rstrip())
    return "\n".join(lines)


def test_the_indonesian_vm_guide_shows_the_english_commands_byte_for_byte() -> None:
    english = (DOCS / "deployment.md").read_text(encoding="utf-8")
    original = blocks(english[english.index(VM_SECTION) :])
    translated = blocks((DOCS / "id" / "pemasangan-vm.md").read_text(encoding="utf-8"))
    assert len(original) > 10
    assert translated == original


@pytest.mark.parametrize(
    ("original", "translation"), [("operator-guide.md", "id/panduan-operator.md")]
)
def test_the_indonesian_operator_guide_shows_the_english_commands(
    original: str, translation: str
) -> None:
    english = [without_translated_parts(b) for b in blocks((DOCS / original).read_text())]
    indonesian = [without_translated_parts(b) for b in blocks((DOCS / translation).read_text())]
    assert len(english) > 10
    assert indonesian == english
