"""The Makefile is the project's front door: every target documented, the environment created
on demand, and the conda environment used when one is active. Checked with ``make -n`` (a dry
run: nothing is installed or executed)."""

from __future__ import annotations

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
        assert (f"{py} train --profile full --hp params/full-member-hp.json --epochs 200 --seed {seed} "
                f"--run-dir runs/full/member200-s{seed}") in plan
    lite = (f"{py} train --profile full --model lite --hp params/full-lite-distill-hp.json --seed 1 "
            "--run-dir runs/full/lite-distill-s1")
    ship_main = (f"{py} ensemble runs/full/member200-s0 runs/full/member200-s1 runs/full/member200-s2 "
                 "--profile full --float16-weights --ship --run-dir runs/full/main-ensemble")
    assert lite in plan and ship_main in plan and f"{lite} --ship" in plan
    members = [i for i, line in enumerate(plan) if "--run-dir runs/full/member200" in line]
    # the lite learns from the main model that the members make, so it trains after it is shipped
    assert max(members) < plan.index(ship_main) < plan.index(lite) < plan.index(f"{lite} --ship")


def test_gpu_members_are_the_cpu_profiles_network():
    import json

    from fer import config

    member_hp = json.loads((PROJECT_DIR / "params" / "full-member-hp.json").read_text())
    assert member_hp == config.load_profile("cpu")["train"]["hp"]
    # the distilled member (README) is the same network taught by the shipped main model
    distilled = json.loads((PROJECT_DIR / "params" / "full-member-distill-hp.json").read_text())
    assert {k: v for k, v in distilled.items() if k in member_hp} == member_hp
    assert {k: v for k, v in distilled.items() if k not in member_hp} == {
        "teacher": "fer/weights/main.keras", "distill": 0.8, "distill_online": True}


def test_gpu_lite_recipe_is_the_shipped_lites():
    """`make ensemble-full`'s lite line reproduces the shipped lite: its card's recipe is
    params/full-lite-distill-hp.json on the cpu profile's lite network, seed 1, and its teacher was
    the main model shipped beside it."""
    import json

    recipe = json.loads((PROJECT_DIR / "params" / "full-lite-distill-hp.json").read_text())
    lite_widths = json.loads((PROJECT_DIR / "params" / "cpu-lite-hp.json").read_text())
    card = json.loads((PROJECT_DIR / "fer" / "weights" / "lite.json").read_text())
    main = json.loads((PROJECT_DIR / "fer" / "weights" / "main.json").read_text())
    assert {k: recipe[k] for k in lite_widths} == lite_widths
    assert card["config"]["hp"] == lite_widths
    assert {k: card["config"][k] for k in recipe if k not in lite_widths} == {
        k: v for k, v in recipe.items() if k not in lite_widths}
    assert card["config"]["seed"] == 1 and card["data"]["profile"] == "full"
    assert card["teacher"]["sha256"] == main["sha256"]
