"""Colab: the notebooks' setup cell, and pointing the project at a fork.

The repository's address lives in one place, ``[project.urls] Repository`` in ``pyproject.toml``.
The README's "Open in Colab" links and the first cell of every notebook are derived from it:
``make colab REPO=owner/name`` (``python -m fer.reporting.colab --repo owner/name``) rewrites all three for
a fork, and :func:`disagreements` lists whatever does not match. Standard library only, so it
runs on a fresh clone before the project is installed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from fer.config import PROJECT_DIR

#: Where the setup cell clones the project on Colab (``/content`` is Colab's working folder).
CLONE_DIR = "/content/fer-study"

#: The notebooks' first cell. On Colab it clones the project and pip-installs it with the study
#: extra (the notebooks train and tune): pyproject's ranges admit what Colab preinstalls
#: (TensorFlow, Keras, ipywidgets 7.7, OpenCV), so pip adds only what is missing (keras-tuner,
#: papermill, ai-edge-litert for BlazeFace, ...). The editable install is visible to kernels
#: started afterwards; this one gets the path. Anywhere else the project is installed already
#: (``make env``), so the cell does nothing.
SETUP_CELL = """\
import sys

if "google.colab" in sys.modules:  # Colab: fetch this project, install it with what Colab lacks (use a GPU runtime for 02)
    !test -d {clone} || git clone -q --depth 1 {url} {clone}
    %pip install -q -e "{clone}[study]"
    sys.path.insert(0, "{clone}")  # this kernel started before the install"""

_OWNER_NAME = r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+"
#: ``https://colab.research.google.com/github/OWNER/NAME/blob/BRANCH/notebooks/NN_name.ipynb``
COLAB_LINK = re.compile(r"(https://colab\.research\.google\.com/github/)(" + _OWNER_NAME + r")(/blob/)")
_REPOSITORY = re.compile(r'^(\s*Repository\s*=\s*")([^"]*)(")', re.MULTILINE)


def setup_cell(url: str) -> str:
    """The setup cell's source for a project at ``url`` (``https://github.com/owner/name``)."""
    return SETUP_CELL.format(url=url, clone=CLONE_DIR)


def github_url(repo: str) -> str:
    """``owner/name`` (or a GitHub URL of it) → ``https://github.com/owner/name``."""
    repo = re.sub(r"^(https?://)?(www\.)?github\.com/", "", repo.strip()).removesuffix(".git").strip("/")
    if not re.fullmatch(_OWNER_NAME, repo):
        raise ValueError(f"{repo!r} is not a GitHub repository: give it as owner/name, e.g. alice/fer-study")
    return f"https://github.com/{repo}"


def repository_url(root: str | Path = PROJECT_DIR) -> str:
    """``[project.urls] Repository`` from ``root/pyproject.toml``."""
    path = Path(root) / "pyproject.toml"
    match = _REPOSITORY.search(_urls_table(path.read_text(encoding="utf-8"), path)[1])
    if not match:
        raise ValueError(f'{path}: [project.urls] has no Repository = "https://github.com/owner/name" line')
    return match.group(2)


def _urls_table(text: str, path: Path) -> tuple[int, str]:
    """Offset and text of the ``[project.urls]`` table (up to the next table)."""
    start = text.find("[project.urls]")
    if start < 0:
        raise ValueError(f"{path}: no [project.urls] table; add one with Repository = \"https://github.com/owner/name\"")
    end = text.find("\n[", start + 1)
    return start, text[start:end if end >= 0 else len(text)]


def notebooks(root: str | Path = PROJECT_DIR) -> list[Path]:
    """The numbered notebooks under ``root/notebooks``."""
    return sorted((Path(root) / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def first_code_cell(nb: dict) -> dict:
    return next(c for c in nb["cells"] if c["cell_type"] == "code")


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _write_notebook(path: Path, nb: dict) -> None:
    # nbformat's own layout (sorted keys, one-space indent), so a rewrite changes only the cell
    path.write_text(json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def disagreements(root: str | Path = PROJECT_DIR) -> list[str]:
    """Every place that does not match pyproject's repository URL; empty when all agree."""
    root = Path(root)
    url = repository_url(root)
    repo = url.removeprefix("https://github.com/")
    problems = []
    readme = root / "README.md"
    if readme.exists():
        for match in COLAB_LINK.finditer(readme.read_text(encoding="utf-8")):
            if match.group(2) != repo:
                problems.append(f"README.md: a Colab link points at {match.group(2)}, pyproject at {repo}")
    expected = setup_cell(url)
    for path in notebooks(root):
        if _source(first_code_cell(json.loads(path.read_text(encoding="utf-8")))) != expected:
            problems.append(f"notebooks/{path.name}: the first cell is not fer.reporting.colab.setup_cell({url!r})")
    return problems


def point_at(repo: str, root: str | Path = PROJECT_DIR) -> list[Path]:
    """Point pyproject's URL, the README's Colab links and the notebooks' setup cells at ``repo``.

    ``repo`` is ``owner/name``. Returns the files changed; running it again changes nothing.
    """
    root = Path(root)
    url = github_url(repo)
    repo = url.removeprefix("https://github.com/")
    old_url = repository_url(root)
    changed = []

    pyproject = root / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    start, table = _urls_table(text, pyproject)
    new = text[:start] + _REPOSITORY.sub(lambda m: m.group(1) + url + m.group(3), table, count=1) + text[start + len(table):]
    changed += _replace(pyproject, text, new)

    readme = root / "README.md"
    if readme.exists():
        text = readme.read_text(encoding="utf-8")
        new = COLAB_LINK.sub(lambda m: m.group(1) + repo + m.group(3), text)
        if old_url != url:  # e.g. a `git clone https://github.com/owner/name` line
            new = re.sub(re.escape(old_url) + r"(?![A-Za-z0-9_.-])", url, new)
        changed += _replace(readme, text, new)

    for path in notebooks(root):
        nb = json.loads(path.read_text(encoding="utf-8"))
        cell = first_code_cell(nb)
        wanted = setup_cell(url)
        if _source(cell) != wanted:
            cell["source"] = wanted.splitlines(keepends=True)
            _write_notebook(path, nb)
            changed.append(path)
    return changed


def _replace(path: Path, old: str, new: str) -> list[Path]:
    if new == old:
        return []
    path.write_text(new, encoding="utf-8")
    return [path]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fer.reporting.colab", description=(
        "Point the project at your GitHub copy: pyproject's [project.urls] Repository, the README's "
        "'Open in Colab' links and the setup cell of every notebook. Idempotent."))
    parser.add_argument("--repo", required=True, metavar="OWNER/NAME", help="your repository, e.g. alice/fer-study")
    parser.add_argument("--root", default=str(PROJECT_DIR), help=argparse.SUPPRESS)  # tests: a copy of the project
    args = parser.parse_args(argv)
    try:
        changed = point_at(args.repo, args.root)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    root = Path(args.root).resolve()
    for path in changed:
        print(f"rewrote {path.resolve().relative_to(root)}")
    print(f"{repository_url(root)}: " + ("already everywhere" if not changed else f"{len(changed)} file(s) updated"))
    problems = disagreements(root)
    for line in problems:
        print(f"still differs: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
