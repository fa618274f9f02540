"""Every relative link in the README and ``docs/`` reaches a file, and its ``#anchor`` a
heading of that file (GitHub's heading ids), and every repository path the docs name in
backticks exists, so moving a section or a module cannot strand a reader."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*$", re.MULTILINE)
REPO_PATH = re.compile(
    r"(?<![\w/.-])((?:benchmarks|deploy|devices|ingest|kotaflow|processors|tests)/[\w./@-]*[\w/])"
)
MADE_BY_THE_OPERATOR = {
    "deploy/.env",
    "deploy/kotaflow.env",
    "deploy/config/registry.yaml",
    "deploy/secrets/kafka-scram-password",
}
"""Files the deployment guides tell the operator to create."""


def heading_ids(path: Path) -> set[str]:
    """GitHub's ids: lower case, punctuation but ``-`` dropped, spaces become ``-``."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {
        re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        for heading in HEADING.findall(text)
    }


def relative_links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return [link for link in LINK.findall(text) if not re.match(r"[a-z]+:", link)]


@pytest.mark.parametrize("doc", DOC_FILES, ids=[str(p.relative_to(ROOT)) for p in DOC_FILES])
def test_relative_links_reach_a_file_and_heading(doc: Path) -> None:
    broken = []
    for link in relative_links(doc):
        target, _, anchor = link.partition("#")
        path = (doc.parent / target).resolve() if target else doc
        if not path.exists():
            broken.append(f"{link}: no file {path.relative_to(ROOT)}")
        elif anchor and path.suffix == ".md" and anchor not in heading_ids(path):
            broken.append(f"{link}: no heading #{anchor} in {path.relative_to(ROOT)}")
    assert not broken, f"{doc.relative_to(ROOT)}:\n" + "\n".join(broken)


def test_every_docs_page_is_linked_from_the_index_or_the_readme() -> None:
    linked = set()
    for index in (ROOT / "README.md", ROOT / "docs" / "README.md"):
        for link in relative_links(index):
            linked.add((index.parent / link.partition("#")[0]).resolve())
    pages = {p.resolve() for p in (ROOT / "docs").rglob("*.md")} - {
        (ROOT / "docs" / "README.md").resolve()
    }
    assert not sorted(str(p.relative_to(ROOT)) for p in pages - linked)


@pytest.mark.parametrize("doc", DOC_FILES, ids=[str(p.relative_to(ROOT)) for p in DOC_FILES])
def test_repository_paths_named_in_the_docs_exist(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    named = {
        path
        for span in re.findall(r"`([^`\n]+)`", FENCE.sub("", text))
        for path in REPO_PATH.findall(span)
        if not set(path) & set("<>*{}")
    }
    missing = sorted(p for p in named - MADE_BY_THE_OPERATOR if not (ROOT / p).exists())
    assert not missing, f"{doc.relative_to(ROOT)} names paths that do not exist: {missing}"
