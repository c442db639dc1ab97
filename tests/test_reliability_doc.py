"""docs/reliability.md stays current: every test it cites exists (a renamed or deleted test fails here)."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cited_tests() -> list[tuple[str, str | None]]:
    """(file, test name or None) for each node id in the doc; `::name` after a cited node reuses its file."""
    text = (REPO / "docs" / "reliability.md").read_text()
    out, last_file = [], None
    for match in re.finditer(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`", text):
        path, name = match.group(1), match.group(2)
        if path is None and name is None:
            continue
        last_file = path or last_file
        out.append((last_file, name))
    return out


def test_every_cited_test_exists():
    cited = cited_tests()
    assert len(cited) > 40
    missing = []
    for path, name in cited:
        source = REPO / path
        if not source.is_file() or (name and not re.search(rf"^def {name}\(", source.read_text(), re.M)):
            missing.append(f"{path}::{name}" if name else path)
    assert not missing, f"docs/reliability.md cites tests that do not exist: {missing}"
