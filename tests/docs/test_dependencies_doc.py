"""Every dependency of pyproject.toml says in docs/dependencies.md why it was chosen."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0].lower() for req in requirements}


def test_every_dependency_has_an_entry():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = _names(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        names |= _names(extra)
    documented = {
        name.lower() for name in re.findall(r"\*\*([A-Za-z0-9_.-]+)\*\*", (ROOT / "docs/dependencies.md").read_text())
    }
    missing = sorted(names - documented)
    assert not missing, f"docs/dependencies.md has no entry for {missing}"
