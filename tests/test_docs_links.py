"""The documents point at things that exist: every relative link in README.md, CONTRIBUTING.md,
SECURITY.md, CHANGELOG.md and docs/**/*.md names a file or directory inside the repository, and
every `server/...py` or `middleware/...py` path they quote in backticks is a real file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL = ("README.md", "CONTRIBUTING.md", "SECURITY.md", "CHANGELOG.md")

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
# [text](target) and ![alt](target), the target up to whitespace (a title may follow) or ")".
_INLINE_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+[^)]*)?\)")
# [label]: target, at the start of a line.
_REFERENCE = re.compile(r"^[ ]{0,3}\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s.*)?$", re.MULTILINE)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_SOURCE_PATH = re.compile(r"(?<![\w/.-])((?:server|middleware)/[\w./-]*?\.py)(?![\w])")


def documents() -> list[Path]:
    found = [ROOT / name for name in TOP_LEVEL]
    found += sorted((ROOT / "docs").glob("**/*.md"))
    return found


def _without_code(text: str) -> str:
    """The text with fenced blocks and code spans blanked: links inside them are examples."""
    text = _FENCE.sub("", text)
    return _CODE_SPAN.sub("", text)


def relative_links(text: str) -> list[str]:
    """The link targets that point into the repository (no URL scheme, not a bare #anchor)."""
    prose = _without_code(text)
    targets = _INLINE_LINK.findall(prose) + _REFERENCE.findall(prose)
    return [t for t in targets if not _SCHEME.match(t) and not t.startswith(("#", "//"))]


def broken_links(document: Path, root: Path = ROOT) -> list[str]:
    """One line per relative link of `document` that leaves `root` or names nothing there."""
    problems: list[str] = []
    for target in relative_links(document.read_text(encoding="utf-8")):
        path = target.split("#", 1)[0].split("?", 1)[0]
        if not path:
            continue
        resolved = (document.parent / path).resolve()
        if not resolved.is_relative_to(root):
            problems.append(f"{target}: outside the repository")
        elif not resolved.exists():
            problems.append(f"{target}: no such file or directory")
    return problems


def quoted_source_paths(text: str) -> list[str]:
    """`server/...py` and `middleware/...py` paths quoted in code spans outside fenced blocks."""
    spans = _CODE_SPAN.findall(_FENCE.sub("", text))
    return [path for span in spans for path in _SOURCE_PATH.findall(span)]


def missing_source_paths(document: Path, root: Path = ROOT) -> list[str]:
    text = document.read_text(encoding="utf-8")
    return [path for path in quoted_source_paths(text) if not (root / path).is_file()]


def _name(document: Path) -> str:
    return str(document.relative_to(ROOT))


def test_the_documents_exist() -> None:
    for name in (*TOP_LEVEL, "docs/architecture.md", "docs/decisions/README.md"):
        assert (ROOT / name).is_file(), name


@pytest.mark.parametrize("document", documents(), ids=_name)
def test_relative_links_point_into_the_repository(document: Path) -> None:
    assert broken_links(document) == []


@pytest.mark.parametrize("document", documents(), ids=_name)
def test_quoted_source_paths_exist(document: Path) -> None:
    assert missing_source_paths(document) == []


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "server").mkdir()
    (tmp_path / "server" / "app.py").write_text("")
    (tmp_path / "docs" / "real.md").write_text("")
    document = tmp_path / "docs" / "page.md"
    document.write_text(
        "[fine](real.md#part) [dir](../server/) [web](https://example.com/x.md) [top](#top)\n"
        "[gone](missing.md) [escape](../../outside.md) ![img](pic.png)\n"
        "[ref]: ../nowhere/\n"
        "`server/app.py` and `server/gone.py`, `python -m middleware/none.py --x`\n"
        "```\n[in a fence](fenced.md) `server/fenced.py`\n```\n"
        "`[in a span](span.md)`\n"
    )
    assert broken_links(document, tmp_path) == [
        "missing.md: no such file or directory",
        "../../outside.md: outside the repository",
        "pic.png: no such file or directory",
        "../nowhere/: no such file or directory",
    ]
    assert missing_source_paths(document, tmp_path) == ["server/gone.py", "middleware/none.py"]
