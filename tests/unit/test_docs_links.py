"""README.md and docs/*.md point only at files in the repository: every relative link, and
every page they name (`something.md`), is a file here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) and <target>, minus a #fragment or a "title".
LINK = re.compile(r"\]\(\s*<?([^)>\s#]+)[^)]*\)")
# A page named in prose or code: docs/cli.md, ARCHITECTURE.md, ../shared/docs/X.md.
PAGE_NAME = re.compile(r"(?<![\w/.-])((?:\.\./|\./)?(?:[\w.-]+/)*[\w-]+\.md)\b")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # https:, mailto:, ...


def _exists(page: Path, target: str) -> bool:
    """A target is found beside the page or from the repository's root, and stays inside it."""
    for base in (page.parent, ROOT):
        resolved = (base / target).resolve()
        if resolved.is_relative_to(ROOT) and resolved.exists():
            return True
    return False


def missing_targets(page: Path) -> list[str]:
    text = page.read_text()
    targets = [t for t in LINK.findall(text) if not EXTERNAL.match(t)]
    targets += PAGE_NAME.findall(text)
    return sorted({target for target in targets if not _exists(page, target)})


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_and_named_page_is_in_the_repository(page: Path) -> None:
    assert missing_targets(page) == []


def test_the_check_finds_what_is_not_here() -> None:
    page = ROOT / "docs" / "cli.md"
    text = (
        "See [the design](../shared/docs/ARCHITECTURE.md), [a page](docs/gone.md#top), "
        "ARCHITECTURE.md, `docs/cli.md`, [tickets](tickets.md) and [site](https://example.org/x.md)."
    )
    found = sorted(
        {t for t in LINK.findall(text) if not EXTERNAL.match(t)} | set(PAGE_NAME.findall(text))
    )
    missing = [target for target in found if not _exists(page, target)]
    assert missing == ["../shared/docs/ARCHITECTURE.md", "ARCHITECTURE.md", "docs/gone.md"]
    assert "docs/architecture.md" not in missing
