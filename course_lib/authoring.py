"""Authoring helpers: the set-up cell at the top of every notebook.

Every notebook (``notebooks/``, ``exercises/``, ``solutions/``) starts with the same
first code cell. On Colab, or anywhere ``course_lib`` is not installed yet, it
installs the library from the course repository; then it prints where the notebook
runs. The repository's address is configured once, in ``_config.yml``
(``repository: url:``); this module turns it into the cell, and

    python -m course_lib.authoring sync           # rewrite the cell in every notebook
    python -m course_lib.authoring sync --check   # exit 1 if any notebook is out of date

keeps the notebooks in step after the address changes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterable

NOTEBOOK_DIRS = ("notebooks", "exercises", "solutions")
SETUP_COMMENT = "# Set-up: installs course_lib where it is missing (e.g. on Colab), then says where this notebook runs."


def setup_cell_source(repo_url: str) -> str:
    """The canonical first code cell of every notebook, for the repository at ``repo_url``."""
    repo_url = repo_url.strip().rstrip("/")
    if not repo_url or any(c in repo_url for c in "\"' \n"):
        raise ValueError(f"not a usable repository address: {repo_url!r}")
    return (
        f"{SETUP_COMMENT}\n"
        "try:\n"
        "    import course_lib\n"
        "except ImportError:\n"
        f'    %pip install -q "course_lib @ git+{repo_url}"\n'
        "from course_lib import runtime\n"
        "runtime.describe();"
    )


def find_root(start: Path | None = None) -> Path:
    """The repository root: the nearest folder, upwards from ``start``, that holds ``_config.yml``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_config.yml").is_file():
            return folder
    raise FileNotFoundError(f"no _config.yml in {here} or any folder above it")


def repository_url(root: Path | None = None) -> str:
    """The address under ``repository: url:`` in the book's ``_config.yml``."""
    import yaml  # a development dependency: imported here so `import course_lib.authoring` never needs it

    root = find_root(root)
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8")) or {}
    url = (config.get("repository") or {}).get("url")
    if not url:
        raise KeyError(f"{root / '_config.yml'} has no repository: url:")
    return str(url)


def notebook_paths(root: Path) -> list[Path]:
    """Every committed notebook of the course, in a stable order."""
    return [p for d in NOTEBOOK_DIRS for p in sorted((root / d).glob("*.ipynb"))]


def _source_text(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


_SETUP_LINES = (
    "try:",
    "import course_lib",
    "except ImportError:",
    "from course_lib import runtime",
    "runtime.describe()",
    "runtime.describe();",
)


def _is_setup_cell(cell: dict) -> bool:
    """Whether ``cell`` is a set-up cell, this version's or an older one (so sync may rewrite it)."""
    lines = [line.strip() for line in _source_text(cell).splitlines() if line.strip()]
    if not lines or not any("course_lib" in line for line in lines):
        return False
    return all(
        line in _SETUP_LINES or line.startswith("# Set-up") or (line.startswith("%pip install") and "course_lib" in line)
        for line in lines
    )


def first_code_cell(nb: dict) -> dict | None:
    return next((c for c in nb.get("cells", []) if c.get("cell_type") == "code"), None)


def sync_notebook(nb: dict, source: str) -> bool:
    """Make ``source`` the first code cell of ``nb`` (in place); return whether anything changed.

    An existing set-up cell is rewritten; otherwise a new cell is inserted before
    the first code cell, so no cell of the chapter itself is ever overwritten.
    """
    cells = nb.setdefault("cells", [])
    lines = source.splitlines(keepends=True)
    first = first_code_cell(nb)
    if first is not None and _is_setup_cell(first):
        if _source_text(first) == source and not first.get("outputs") and first.get("execution_count") is None:
            return False
        first["source"] = lines
        first["outputs"] = []
        first["execution_count"] = None
        return True
    cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": lines}
    if nb.get("nbformat", 4) >= 4 and nb.get("nbformat_minor", 0) >= 5:
        taken = {c.get("id") for c in cells}
        cell_id, n = "course-setup", 1
        while cell_id in taken:
            n += 1
            cell_id = f"course-setup-{n}"
        cell = {"cell_type": "code", "execution_count": None, "id": cell_id, "metadata": {}, "outputs": [], "source": lines}
    index = cells.index(first) if first is not None else len(cells)
    cells.insert(index, cell)
    return True


def write_notebook(nb: dict, path: Path) -> None:
    """Write ``nb`` the way nbformat and Jupyter do (sorted keys, indent 1), atomically."""
    text = json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False, separators=(",", ": ")) + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def sync(root: Path | None = None, paths: Iterable[Path] | None = None, check: bool = False) -> list[Path]:
    """Bring the set-up cell of every notebook in line with ``_config.yml``; return the notebooks that were (or would be) changed."""
    root = find_root(root)
    source = setup_cell_source(repository_url(root))
    changed = []
    for path in [Path(p) for p in paths] if paths else notebook_paths(root):
        nb = json.loads(path.read_text(encoding="utf-8"))
        if sync_notebook(nb, source):
            changed.append(path)
            if not check:
                write_notebook(nb, path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.authoring", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sync", help="rewrite the set-up cell of every notebook from _config.yml")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if any notebook is out of date")
    p.add_argument("notebooks", nargs="*", type=Path, help="notebooks to sync (default: all of the course's)")
    p.add_argument("--root", type=Path, default=None, help="repository root (default: found from the current folder)")
    args = parser.parse_args(argv)
    changed = sync(args.root, args.notebooks or None, check=args.check)
    for path in changed:
        print(f"{'out of date' if args.check else 'updated'}: {path}")
    if args.check and changed:
        print("run `python -m course_lib.authoring sync` to update them", file=sys.stderr)
        return 1
    if not changed:
        print("every notebook's set-up cell is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
