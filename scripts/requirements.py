"""Print the pinned requirements from pyproject.toml (base or test), one per line.

pyproject.toml is the single place where versions are pinned; the Makefile feeds
this output to pip so the box installs without building the project itself.
"""
import sys
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
which = sys.argv[1] if len(sys.argv) > 1 else "base"
reqs = project["dependencies"] if which == "base" else project["optional-dependencies"][which]
print("\n".join(reqs))
