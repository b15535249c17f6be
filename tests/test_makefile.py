"""The Makefile is the project's front door: every target documented, the environment created
on demand, and the conda environment used when one is active. Checked with ``make -n`` (a dry
run: nothing is installed or executed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

from fer.config import PROJECT_DIR

REQUIRED = ["help", "env", "data", "smoke", "reproduce", "reports", "test", "test-fast", "lint", "demo", "clean"]


def make(*args: str, **env: str) -> str:
    assert shutil.which("make"), "make is not installed (apt-get install make): it is how README runs every step"
    environ = {k: v for k, v in os.environ.items() if k not in ("CONDA_PREFIX", "MAKEFLAGS")}
    out = subprocess.run(["make", "--no-print-directory", *args], cwd=PROJECT_DIR, env={**environ, **env},
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_help_lists_every_target_with_its_description():
    lines = make("help").splitlines()
    documented = {m.group(1): m.group(2) for m in (re.match(r"\s+(\S+)\s+(.+)", line) for line in lines) if m}
    for target in REQUIRED:
        assert documented.get(target), f"`make help` does not describe `{target}`"


def test_commands_run_through_the_project_environment(tmp_path):
    stamp_free = {"CONDA_PREFIX": str(tmp_path)}  # an "active conda env" without our stamp
    plan = make("-n", "test", **stamp_free)
    assert f"{tmp_path}/bin/python -m pip install -e '.[dev]'" in plan
    assert f"{tmp_path}/bin/python -m pytest" in plan
    assert "venv" not in plan  # no .venv when conda is active
    assert f"{tmp_path}/bin/python -m fer reproduce --profile auto" in make("-n", "reproduce", **stamp_free)
    assert "--profile smoke" in make("-n", "reproduce", "PROFILE=smoke", **stamp_free)


def test_test_runs_everything_and_test_fast_leaves_out_the_slow_tests(tmp_path):
    stamp = tmp_path / ".fer-study-installed"
    stamp.touch()
    os.utime(stamp, (2**31, 2**31))  # an installed environment: only the pytest line is planned
    py = f"{tmp_path}/bin/python -m pytest"
    assert make("-n", "test", CONDA_PREFIX=str(tmp_path)).splitlines() == [py]
    assert make("-n", "test-fast", CONDA_PREFIX=str(tmp_path)).splitlines() == [f"{py} -m \"not slow\""]
    ini = (PROJECT_DIR / "pyproject.toml").read_text()
    assert '"slow: ' in ini  # the marker test-fast selects on is declared (pytest warns on unknown ones)


def test_installed_environment_is_not_reinstalled(tmp_path):
    stamp = tmp_path / ".fer-study-installed"
    stamp.touch()
    os.utime(stamp, (2**31, 2**31))  # newer than pyproject.toml
    plan = make("-n", "test", CONDA_PREFIX=str(tmp_path))
    assert "pip install" not in plan and "-m pytest" in plan


def test_without_conda_a_venv_is_created():
    plan = make("-n", "demo")
    assert ".venv/bin/python -m fer serve" in plan
    if not (PROJECT_DIR / ".venv" / ".fer-study-installed").exists():
        assert "-m venv .venv" in plan


def test_no_target_ships_a_model_but_the_explicit_ship_step(tmp_path):
    """`make reproduce PROFILE=full` replaces the old ensemble-full recipe and ships nothing; `make ship`
    is the one target that writes fer/weights, through `python -m fer ship`."""
    text = (PROJECT_DIR / "Makefile").read_text()
    assert "ensemble-full" not in text and "--ship" not in text
    shipping = [line for line in text.splitlines() if re.search(r"\bfer ship\b|fer/weights/\S+\.keras", line)
                and not line.lstrip().startswith("#")]
    assert shipping == ["\t$(PYTHON) -m fer ship --profile $(PROFILE)"]
    py = f"{tmp_path}/bin/python -m fer"
    assert make("-n", "reproduce", "PROFILE=full", CONDA_PREFIX=str(tmp_path)).splitlines()[-1] == f"{py} reproduce --profile full"
    assert make("-n", "ship", "PROFILE=full", CONDA_PREFIX=str(tmp_path)).splitlines()[-1] == f"{py} ship --profile full"


def _recipe(card_config: dict, profile: dict, block: str, hp: dict) -> tuple[dict, dict]:
    """A shipped card's training options beside what ``block`` of ``profile`` with ``hp`` gives
    now (options added since the card was written compared at their defaults)."""
    from dataclasses import asdict

    from fer.config import config_from_profile
    from fer.training.fit import with_defaults

    now = json.loads(json.dumps(asdict(config_from_profile(profile, block, hp))))
    return with_defaults(card_config), now


def test_the_full_profile_is_the_recipe_of_the_shipped_models():
    """`make reproduce PROFILE=full` retrains what ships: fer/weights/main.keras averages the full
    profile's members (its main block with seeds 0, 1, 2), and fer/weights/lite.keras is its lite
    block (seed 1) distilled from the main model shipped beside it, as fer.training.recipe does it."""
    from fer.config import load_profile
    from fer.training import recipe

    full = load_profile("full")
    main = json.loads((PROJECT_DIR / "fer" / "weights" / "main.json").read_text())
    assert [m["config"]["seed"] for m in main["members"]] == recipe.member_seeds(full) == [0, 1, 2]
    assert main["weights_dtype"] == ("float16" if full["float16_weights"] else "float32")
    for member in main["members"]:
        shipped, now = _recipe(member["config"], full, "main", {"seed": member["config"]["seed"]})
        assert shipped == now
    lite = json.loads((PROJECT_DIR / "fer" / "weights" / "lite.json").read_text())
    # the recipe's teacher is the ensemble's run file; the shipped lite names the shipped copy of it
    shipped, now = _recipe(lite["config"], full, "lite", {"teacher": lite["config"]["teacher"],
                                                          "seed": recipe.lite_seed(full)})
    assert shipped == now
    assert lite["teacher"]["sha256"] in (main["sha256"], (main.get("source_run") or {}).get("sha256"))
    assert lite["data"]["profile"] == "full"
    assert not full.get("tune_in_recipe", True)  # the shipped recipe did not search
