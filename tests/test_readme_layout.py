"""The README's layout table names every module of the packages and every benchmark script."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FOLDERS = ("learned_sampler", "examples", "wysiwyg_gan", "integrations/wysiwyg_nerfstudio", "benchmarks")


def layout_rows() -> dict[str, str]:
    """First cell of each row of the README's layout table (a folder) -> the rest of the row."""
    rows = {}
    for line in (REPO / "README.md").read_text().splitlines():
        match = re.match(r"\| `([^`]+)/` \| (.*) \|$", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def test_every_module_is_in_the_layout_table():
    rows = layout_rows()
    missing = []
    for folder in FOLDERS:
        assert folder in rows, f"README layout table has no row for {folder}/"
        named = set(re.findall(r"`([\w./]+)`", rows[folder]))
        # A module may be named with or without its extension, alone or inside its subfolder's name.
        names = named | {name.removesuffix(".py") for name in named}
        for path in sorted((REPO / folder).rglob("*.py")):
            if path.name == "__init__.py":
                continue
            if path.stem not in names and path.name not in names:
                missing.append(str(path.relative_to(REPO)))
    assert not missing, f"modules missing from the README's layout table: {missing}"


def github_anchor(heading: str) -> str:
    """The fragment GitHub gives a markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_into_the_results_file_name_existing_sections():
    results = (REPO / "benchmarks" / "RESULTS.md").read_text()
    anchors = {github_anchor(line.lstrip("#")) for line in results.splitlines() if line.startswith("#")}
    links = re.findall(r"RESULTS\.md#([\w\-]+)", (REPO / "README.md").read_text())
    links += re.findall(r"\]\(#([\w\-]+)\)", results)
    assert links, "no links found: the test's patterns no longer match the files"
    missing = [link for link in links if link not in anchors]
    assert not missing, f"links to missing RESULTS sections: {missing}"
