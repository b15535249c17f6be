"""fer.cli's own rules: a command that needs an extra names it in one line, the study's commands
say they need the repository when run from an installed package, and an installed package keeps
its files in the user's cache folder (fer.config)."""

import sys

import pytest

from fer import cli, config


def test_a_missing_package_of_an_extra_names_the_extra():
    line = cli.missing_extra(ModuleNotFoundError("No module named 'keras'", name="keras"), "train")
    assert line == "python -m fer train needs the study extra (keras is not installed): pip install 'fer-study[study]'"
    assert "fer-study[scale]" in cli.missing_extra(ModuleNotFoundError(name="jax.numpy"), "train")
    assert cli.missing_extra(ModuleNotFoundError(name="numpyy"), "predict") is None  # not ours to explain


def test_a_command_without_keras_prints_one_line_and_exits_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "keras", None)  # `import keras` now fails as on a core install
    assert cli.main(["export", "-o", str(tmp_path), "--formats", "tflite", "--check", "0"]) == 2
    err = capsys.readouterr().err
    assert err == "error: python -m fer export needs the study extra (keras is not installed): pip install 'fer-study[study]'\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["train", "--profile", "smoke"], ["tune", "--profile", "smoke"],
                                     ["reproduce", "--profile", "smoke"], ["reports"]])
def test_the_study_needs_the_repository(monkeypatch, capsys, command):
    monkeypatch.setattr(config, "IN_CHECKOUT", False)
    assert cli.main(command) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "needs the repository" in err[0] and "git clone" in err[0]


def test_an_installed_package_keeps_its_files_in_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(config, "IN_CHECKOUT", False)
    assert config._home() == tmp_path / "fer-study"
    monkeypatch.setattr(config, "IN_CHECKOUT", True)
    assert config._home() == config.PROJECT_DIR
    assert config.HOME == config.PROJECT_DIR  # this checkout: data/, runs/ and reports/ as before


def test_ship_needs_finished_runs_or_a_profile_and_ships_nothing_otherwise(tmp_path, capsys):
    half = tmp_path / "half"
    half.mkdir()
    (half / "card.json").write_text("{}")  # no model.keras: an unfinished run
    weights = tmp_path / "weights"
    assert cli.main(["ship", str(half), "--weights-dir", str(weights)]) == 2
    assert "not a finished run" in capsys.readouterr().err and not weights.exists()
    assert cli.main(["ship"]) == 2
    assert "--profile NAME" in capsys.readouterr().err
    assert cli.main(["ship", str(half), "--profile", "smoke"]) == 2


def test_a_lite_that_learns_from_a_teacher_asks_for_one(capsys):
    assert cli.main(["train", "--profile", "full", "--model", "lite", "--data", "synthetic"]) == 2
    err = capsys.readouterr().err
    assert "distillation needs a teacher" in err and '"teacher"' in err
