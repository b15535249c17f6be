"""Colab: one repository URL (pyproject), ``make colab REPO=owner/name`` for a fork, and the
setup cell installing the project into a Colab-like environment so that BlazeFace runs there.

The slow test builds that environment in a scratch venv from PyPI (TensorFlow 2.20 alone is
about 600 MB; pip's cache makes later runs quicker) and fails, never skips, when it cannot.
"""

import json
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from fer.config import PROJECT_DIR
from fer.reporting import colab

FORK = "alice/fer-fork"


def pyproject_url(root: Path) -> str:
    return tomllib.loads((root / "pyproject.toml").read_text())["project"]["urls"]["Repository"]


def colab_links(root: Path) -> list[str]:
    return re.findall(r"https://colab\.research\.google\.com/github/\S+?\.ipynb", (root / "README.md").read_text())


def copy_of_project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "notebooks").mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_DIR / name, root / name)
    for nb in colab.notebooks():
        shutil.copy(nb, root / "notebooks" / nb.name)
    return root


def test_todays_files_agree_with_pyprojects_url():
    url = pyproject_url(PROJECT_DIR)
    assert colab.repository_url() == url and url.startswith("https://github.com/")
    links = colab_links(PROJECT_DIR)
    assert len(links) >= len(colab.notebooks()), "the README lost its Colab links"
    assert colab.disagreements() == []


def test_colab_links_name_the_notebooks_that_exist():
    names = {nb.name for nb in colab.notebooks()}
    assert {link.rsplit("/", 1)[1] for link in colab_links(PROJECT_DIR)} == names


def test_make_colab_on_a_copy_points_everything_at_the_fork(tmp_path):
    root = copy_of_project(tmp_path)
    before = {p.name: json.loads(p.read_text()) for p in colab.notebooks(root)}
    links = colab_links(root)
    cmd = [sys.executable, "-m", "fer.reporting.colab", "--repo", FORK, "--root", str(root)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT_DIR)
    assert out.returncode == 0, out.stderr
    url = f"https://github.com/{FORK}"
    assert pyproject_url(root) == url
    new_links = colab_links(root)
    assert len(new_links) == len(links) and all(f"/github/{FORK}/blob/" in link for link in new_links)
    assert [link.split("/blob/")[1] for link in new_links] == [link.split("/blob/")[1] for link in links]
    for path in colab.notebooks(root):
        nb, old = json.loads(path.read_text()), before[path.name]
        first = next(i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code")
        assert "".join(nb["cells"][first]["source"]) == colab.setup_cell(url)
        assert [c for i, c in enumerate(nb["cells"]) if i != first] == [c for i, c in enumerate(old["cells"]) if i != first]
    assert colab.disagreements(root) == []
    # idempotent: a second run changes nothing, byte for byte
    snapshot = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT_DIR)
    assert again.returncode == 0 and "already everywhere" in again.stdout
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == snapshot


def test_a_stale_link_is_reported(tmp_path):
    root = copy_of_project(tmp_path)
    readme = root / "README.md"
    readme.write_text(readme.read_text().replace("/github/GITHUB_USER/REPO/blob/", "/github/someone/else/blob/", 1))
    assert any("someone/else" in p for p in colab.disagreements(root))


def test_make_target_runs_the_entry_point():
    out = subprocess.run(["make", "-n", "colab", f"REPO={FORK}"], capture_output=True, text=True, cwd=PROJECT_DIR)
    assert out.returncode == 0 and f"-m fer.reporting.colab --repo {FORK}" in out.stdout
    bare = subprocess.run(["make", "colab"], capture_output=True, text=True, cwd=PROJECT_DIR)
    assert bare.returncode != 0 and "REPO=owner/name" in bare.stdout


def test_repository_names_are_checked():
    assert colab.github_url("https://github.com/alice/fer-fork.git") == "https://github.com/alice/fer-fork"
    with pytest.raises(ValueError, match="owner/name"):
        colab.github_url("alice")


def test_the_setup_cells_clone_line_clones_the_project(tmp_path):
    if not (PROJECT_DIR / ".git").exists():
        pytest.skip("not a git checkout")
    cell = "".join(colab.first_code_cell(json.loads(colab.notebooks()[0].read_text()))["source"])
    line = next(ln.strip().lstrip("!") for ln in cell.splitlines() if "git clone" in ln)
    dest = tmp_path / "fer-study"
    line = line.replace(colab.repository_url(), PROJECT_DIR.as_uri()).replace(colab.CLONE_DIR, str(dest))
    subprocess.run(line, shell=True, check=True, cwd=tmp_path)
    assert (dest / "pyproject.toml").exists() and (dest / "fer" / "reporting" / "colab.py").exists()
    subprocess.run(line, shell=True, check=True, cwd=tmp_path)  # again: the clone is there, nothing to do


# --------------------------------------------------------------------------- a Colab-like venv

#: What a Colab runtime with TensorFlow 2.20 preinstalls, of what matters here (Colab runs Python
#: 3.12; the venv takes this interpreter's version). Not keras-tuner, papermill or ai-edge-litert:
#: the setup cell has to bring those.
COLAB_PREINSTALLED = [
    "tensorflow==2.20.*", "ipywidgets==7.7.*", "anywidget", "opencv-python==4.12.*",
    "opencv-python-headless==4.12.*", "numpy==2.0.*", "protobuf==5.29.*", "ipykernel==6.17.*",
    "ipython==7.34.*", "notebook==6.5.7", "jupyter-client==6.1.12", "jupyter-server==1.16.*",
    "pandas==2.2.*", "matplotlib==3.10.*", "scikit-learn==1.6.*", "scikit-image==0.25.*", "seaborn",
    "flask==3.1.*", "pyyaml", "tqdm", "kagglehub", "nbconvert", "tensorboard",
]
#: Colab's versions of these must survive the install: the notebooks run on them.
KEPT = ["tensorflow", "keras", "numpy", "ipywidgets", "ipykernel", "ipython", "opencv-python",
        "opencv-python-headless", "anywidget", "pandas", "scikit-learn",
        # onnx (the export extra) would upgrade protobuf, JupyterLab 4 (the lab extra) the server
        "protobuf", "jupyter-client", "jupyter-server", "notebook"]
ADDED = ["ai-edge-litert", "keras-tuner", "papermill"]


def _freeze(python: Path) -> dict[str, str]:
    out = subprocess.run([str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True)
    return {re.sub(r"[-_.]+", "-", d["name"]).lower(): d["version"] for d in json.loads(out.stdout)}


def _working_tree(dest: Path) -> None:
    """The checkout as it is now (tracked and new files, not ignored ones), as the clone would be."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], capture_output=True,
                           cwd=PROJECT_DIR, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = PROJECT_DIR / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


@pytest.mark.slow
def test_setup_cell_in_a_colab_like_venv_runs_blazeface(tmp_path):
    start = time.time()
    venv = tmp_path / "colab-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", *COLAB_PREINSTALLED], check=True, timeout=1800)
    before = _freeze(python)
    assert not set(ADDED) & set(before), "the Colab-like venv already has what the setup cell must add"
    built = time.time()

    clone = tmp_path / "content" / "fer-study"
    _working_tree(clone)
    cell = "".join(colab.first_code_cell(json.loads(colab.notebooks()[-1].read_text()))["source"])
    assert "google.colab" in cell and colab.CLONE_DIR in cell
    cell = cell.replace(colab.repository_url(), PROJECT_DIR.as_uri()).replace(colab.CLONE_DIR, str(clone))
    script = tmp_path / "colab.ipy"
    script.write_text("\n".join([
        "import sys, types",
        "sys.modules['google.colab'] = types.ModuleType('google.colab')  # what Colab's kernel has imported",
        cell,
        "import json, cv2, fer",
        "from fer.inference import faces",
        "from skimage import data as skdata",
        "found = fer.analyze(cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))",
        "print('RESULT ' + json.dumps({'detector': faces.detector().name, 'faces': len(found), "
        "'fer': fer.__file__, 'labels': [f['label'] for f in found]}))",
    ]) + "\n")
    out = subprocess.run([str(venv / "bin" / "ipython"), "--quick", "--no-banner", "--colors=NoColor", str(script)],
                         capture_output=True, text=True, cwd=tmp_path / "content", timeout=1800)
    result = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert result, f"the setup cell or fer.analyze failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    result = json.loads(result.removeprefix("RESULT "))
    assert result["fer"] == str(clone / "fer" / "__init__.py")
    assert result["detector"].startswith("blazeface"), result  # not the Haar fallback
    assert result["faces"] >= 1, result

    after = _freeze(python)
    assert set(ADDED) <= set(after)
    changed = {k: (before[k], after.get(k)) for k in KEPT if before.get(k) != after.get(k)}
    assert not changed, f"the install replaced Colab's own versions: {changed}"
    others = {k: (v, after.get(k)) for k, v in before.items() if after.get(k) != v}
    print(f"\nColab-like venv: built in {built - start:.0f} s, setup cell + analyze in {time.time() - built:.0f} s; "
          f"added {sorted(set(after) - set(before))}; other preinstalled versions changed: {others}")
