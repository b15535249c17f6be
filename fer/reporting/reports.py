"""Reports: execute the notebooks with papermill and render them to HTML with code hidden.

``reproduce(profile)`` runs ``notebooks/0*.ipynb`` in order with the profile's parameters into
``reports/executed/``, converts each into ``reports/html/`` and writes the front page,
``reports/html/index.html`` (``fer.reporting.frontpage``), from ``reports/metrics/<profile>.json``.
``render()`` does only the conversion, for notebooks already executed; ``write_index()`` only the
front page, from the reports and metrics already there. The kernel is always the interpreter running this
code, so a report never silently uses another environment's packages.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fer.config import IN_CHECKOUT, NOTEBOOKS_DIR, PROJECT_DIR, REPORTS_DIR, load_profile
from fer.reporting.frontpage import headline, write_index  # noqa: F401 - both part of fer.reporting.reports' API

KERNEL_NAME = "fer-study-python"


class NotebookFailed(RuntimeError):
    """A notebook raised while executing; the message names the cell and the executed copy."""


def notebooks(directory: str | os.PathLike = NOTEBOOKS_DIR) -> list[Path]:
    """The numbered notebooks (``01_...`` to ``0N_...``) in the order they run."""
    found = sorted(p for p in Path(directory).glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise FileNotFoundError(f"no numbered notebooks (01_*.ipynb ...) in {directory}")
    return found


def notebook_parameters(profile: dict[str, Any], notebook: str | os.PathLike) -> dict[str, Any]:
    """The profile's flat values that ``notebook`` declares in its ``parameters`` cell.

    Blocks (``main:``, ``lite:`` ...) are not parameters: notebooks read them from the
    profile by name, so only scalars travel. The notebook parameter ``tune`` is true when the
    profile has a ``tune:`` block and false when it says ``tune: false`` or ``tune_in_recipe: false``
    (``full``: the shipped recipe has no search).
    """
    import papermill as pm

    declared = pm.inspect_notebook(str(notebook))
    values = {k: v for k, v in profile.items() if k in declared and not isinstance(v, (dict, list))}
    if "tune" in declared and "tune" in profile:
        values["tune"] = bool(profile["tune"]) and profile.get("tune_in_recipe", True) is not False
    return values


@contextmanager
def current_interpreter_kernel() -> Iterator[str]:
    """A temporary kernelspec that starts ``sys.executable`` (found first via ``JUPYTER_PATH``).

    In a checkout, the kernel imports this checkout's ``fer`` first (``PYTHONPATH``), as this
    process does: with several checkouts sharing one environment, the installed ``fer`` may be
    another one's.
    """
    with tempfile.TemporaryDirectory(prefix="fer-kernel-") as tmp:
        spec = Path(tmp) / "kernels" / KERNEL_NAME
        spec.mkdir(parents=True)
        kernel = {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": f"Python ({sys.executable})", "language": "python",
        }
        if IN_CHECKOUT:
            kernel["env"] = {"PYTHONPATH": os.pathsep.join(
                [str(PROJECT_DIR), *filter(None, [os.environ.get("PYTHONPATH")])])}
        (spec / "kernel.json").write_text(json.dumps(kernel))
        old = os.environ.get("JUPYTER_PATH")
        with environ(JUPYTER_PATH=os.pathsep.join([tmp, old] if old else [tmp])):
            yield KERNEL_NAME


@contextmanager
def environ(**values: str) -> Iterator[None]:
    """Set environment variables (inherited by the kernels) for the duration of a block."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def execute(
    notebook: str | os.PathLike,
    parameters: dict[str, Any],
    out_dir: str | os.PathLike,
    kernel_name: str,
    timeout: int | None = None,
) -> Path:
    """Run one notebook with papermill into ``out_dir``; raise :class:`NotebookFailed` naming the cell."""
    import papermill as pm

    notebook = Path(notebook)
    dest = Path(out_dir) / notebook.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        pm.execute_notebook(
            str(notebook), str(dest), parameters=parameters, kernel_name=kernel_name,
            cwd=str(notebook.parent), progress_bar=False, log_output=False, execution_timeout=timeout,
            stdout_file=sys.stdout,  # what the cells print (each epoch's progress line) streams to the terminal
        )
    except pm.PapermillExecutionError as err:
        first = next((ln for ln in err.source.splitlines() if ln.strip() and not ln.startswith("#")), "")
        raise NotebookFailed(
            f"{notebook.name} failed in cell {err.exec_count} (`{first.strip()[:80]}`): "
            f"{err.ename}: {err.evalue}\n  the executed copy with the full traceback: {dest}"
        ) from None
    return dest


def to_html(executed: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Convert an executed notebook to standalone HTML: no code, no prompts, no stderr noise.

    Figures stay embedded (``<img src="data:image/png;base64,...">``), so the file can be
    mailed or committed on its own.
    """
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(executed), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", []) if not (o.output_type == "stream" and o.name == "stderr")]
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nb)
    dest = Path(out_dir) / (Path(executed).stem + ".html")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(body, encoding="utf-8")
    return dest


def reproduce(
    profile: str,
    overrides: dict[str, Any] | None = None,
    reports_dir: str | os.PathLike = REPORTS_DIR,
    notebook_dir: str | os.PathLike = NOTEBOOKS_DIR,
    log: Callable[[str], None] = print,
    only: Iterable[str] | None = None,
) -> Path:
    """Execute every notebook with ``profile`` and render the reports; return the index page.

    ``only`` (name prefixes such as ``["03", "04"]``) runs just those notebooks and keeps the
    others' reports, e.g. to evaluate a newly shipped model without retraining. Stops at the
    first failing notebook (:class:`NotebookFailed`); the notebooks before it keep their reports.
    """
    values = load_profile(profile)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    reports_dir = Path(reports_dir)
    executed_dir, html_dir = reports_dir / "executed", reports_dir / "html"
    books = notebooks(notebook_dir)
    if only:
        only = list(only)
        books = [nb for nb in books if any(nb.stem.startswith(prefix) for prefix in only)]
        if not books:
            raise ValueError(f"no notebook in {notebook_dir} starts with {' or '.join(only)}")
    total_start = time.time()
    # The kernels write reports/metrics themselves: point them at the same reports folder. They
    # run in notebooks/, so a relative $FER_DATA (e.g. ../shared/data/fer2013.zip) is made absolute.
    paths = {"FER_REPORTS_DIR": str(reports_dir.resolve())}
    if os.environ.get("FER_DATA") and os.path.exists(os.environ["FER_DATA"]):
        paths["FER_DATA"] = os.path.abspath(os.environ["FER_DATA"])
    with current_interpreter_kernel() as kernel, environ(**paths):
        for i, nb in enumerate(books, 1):
            start = time.time()
            log(f"[{i}/{len(books)}] {nb.stem}: running (profile {values['profile']}) ...")
            done = execute(nb, notebook_parameters(values, nb), executed_dir, kernel)
            page = to_html(done, html_dir)
            log(f"[{i}/{len(books)}] {nb.stem}: ok in {time.time() - start:.0f} s -> {page}")
    index = write_index(html_dir, reports_dir)
    log(f"all {len(books)} notebooks in {time.time() - total_start:.0f} s; index: {index}")
    return index


def render(reports_dir: str | os.PathLike = REPORTS_DIR, log: Callable[[str], None] = print) -> Path:
    """Convert the already executed notebooks in ``reports/executed`` to HTML, and the index."""
    reports_dir = Path(reports_dir)
    executed = sorted((reports_dir / "executed").glob("[0-9][0-9]_*.ipynb"))
    if not executed:
        raise FileNotFoundError(
            f"no executed notebooks in {reports_dir / 'executed'}; run `python -m fer reproduce` first.")
    for nb in executed:
        log(f"{nb.name} -> {to_html(nb, reports_dir / 'html')}")
    index = write_index(reports_dir / "html", reports_dir)
    log(f"index: {index}")
    return index
