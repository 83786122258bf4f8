"""The README is a short user's guide, and no relative link in it, in docs/ or in the model cards is broken."""

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 200

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+).*?\1")
# [text](target) and ![alt](target); the target may carry a "title" and may be wrapped in <...>
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\"|\s+'[^']*')?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def markdown_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "model_cards").glob("*.md"))]
    return [f for f in files if f.is_file()]


def relative_links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every relative link outside code: anchors and external URLs left out."""
    found, in_fence = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        line = INLINE_CODE.sub("", line)
        targets = [m.group(1) for m in INLINE_LINK.finditer(line)]
        targets += [m.group(1) for m in REFERENCE_LINK.finditer(line)]
        for target in targets:
            target = target.strip("<>").strip()
            if not target or target.startswith("#") or EXTERNAL.match(target):
                continue
            found.append((number, target))
    return found


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """``file:line: target`` of each relative link in ``path`` to a file that does not exist or lies outside
    ``root`` (``/x`` is read from ``root``)."""
    broken = []
    for number, target in relative_links(path.read_text(encoding="utf-8")):
        file_part = unquote(target.split("#", 1)[0].split("?", 1)[0])
        resolved = (root / file_part.lstrip("/")) if file_part.startswith("/") else (path.parent / file_part)
        if not resolved.exists() or not resolved.resolve().is_relative_to(root.resolve()):  # nothing outside the repo
            broken.append(f"{path.relative_to(root)}:{number}: {target}")
    return broken


def test_the_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; experiments belong in docs/studies/"


def test_the_readme_links_the_docs():
    linked = {target for _, target in relative_links((ROOT / "README.md").read_text(encoding="utf-8"))}
    assert "docs/studies/README.md" in linked and "docs/zoo.md" in linked


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_relative_link_is_broken(path):
    assert broken_links(path) == []


def test_the_checker_finds_a_broken_link(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    page = repo / "page.md"
    (repo / "there.md").write_text("# there\n")
    (tmp_path / "outside.md").write_text("# outside the repository\n")
    page.write_text("[ok](there.md#a-section) [web](https://example.org/x) [anchor](#top) [out](../outside.md)\n"
                    "[broken](missing/file.md) ![img](gone.png \"title\")\n"
                    "`[in code](nowhere.md)`\n```\n[in a fence](nowhere.md)\n```\n[ref]: also-missing.md\n")
    assert [t for _, t in relative_links(page.read_text())] == [
        "there.md#a-section", "../outside.md", "missing/file.md", "gone.png", "also-missing.md"]
    assert broken_links(page, root=repo) == [
        "page.md:1: ../outside.md", "page.md:2: missing/file.md", "page.md:2: gone.png", "page.md:7: also-missing.md"]
