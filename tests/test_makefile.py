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
    assert f"{tmp_path}/bin/python -m fer reproduce --profile cpu" in make("-n", "reproduce", **stamp_free)
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


def test_gpu_recipe_trains_the_members_ships_them_then_trains_and_ships_the_lite(tmp_path):
    # -B: plan every step, as on a fresh clone, whatever runs/ holds on this machine
    plan = make("-n", "-B", "ensemble-full", CONDA_PREFIX=str(tmp_path)).splitlines()
    py = f"{tmp_path}/bin/python -m fer"
    for seed in (0, 1, 2):
        assert f"{py} train --profile full --seed {seed} --run-dir runs/full/member200-s{seed}" in plan
    lite = (f"{py} train --profile full --model lite --hp params/full-distill-hp.json --seed 1 "
            "--run-dir runs/full/lite-distill-s1")
    ship_main = (f"{py} ensemble runs/full/member200-s0 runs/full/member200-s1 runs/full/member200-s2 "
                 "--profile full --float16-weights --ship --run-dir runs/full/main-ensemble")
    assert lite in plan and ship_main in plan and f"{lite} --ship" in plan
    members = [i for i, line in enumerate(plan) if "--run-dir runs/full/member200" in line]
    # the lite learns from the main model that the members make, so it trains after it is shipped
    assert max(members) < plan.index(ship_main) < plan.index(lite) < plan.index(f"{lite} --ship")


def _recipe(card_config: dict, profile: dict, block: str, hp: dict) -> tuple[dict, dict]:
    """A shipped card's training options beside what ``block`` of ``profile`` with ``hp`` gives
    now (options added since the card was written compared at their defaults)."""
    from dataclasses import asdict

    from fer.config import config_from_profile
    from fer.training.fit import with_defaults

    now = json.loads(json.dumps(asdict(config_from_profile(profile, block, hp))))
    return with_defaults(card_config), now


def test_the_full_profile_is_the_recipe_of_the_shipped_models():
    """`make ensemble-full` retrains what ships: each member of fer/weights/main.keras is the full
    profile's main block with its seed, and fer/weights/lite.keras its lite block with
    params/full-distill-hp.json, seed 1, taught by the main model shipped beside it."""
    from fer.config import load_profile

    full = load_profile("full")
    main = json.loads((PROJECT_DIR / "fer" / "weights" / "main.json").read_text())
    assert [m["config"]["seed"] for m in main["members"]] == [0, 1, 2]
    for member in main["members"]:
        shipped, now = _recipe(member["config"], full, "main", {"seed": member["config"]["seed"]})
        assert shipped == now
    lite = json.loads((PROJECT_DIR / "fer" / "weights" / "lite.json").read_text())
    distill = json.loads((PROJECT_DIR / "params" / "full-distill-hp.json").read_text())
    shipped, now = _recipe(lite["config"], full, "lite", {**distill, "seed": 1})
    assert shipped == now
    assert lite["teacher"]["sha256"] == main["sha256"] and lite["data"]["profile"] == "full"
