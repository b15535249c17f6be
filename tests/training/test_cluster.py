"""fer.training.cluster: addresses, roles and keras-tuner's variables, the security warning, the GPUs a
host offers its workers, the workers' records, and the CLI's one-line errors."""

from __future__ import annotations

import json
import stat

import pytest

from fer import cli
from fer.training import cluster


@pytest.mark.parametrize("text, want", [("10.0.0.5:8000", ("10.0.0.5", 8000)), ("8123", ("127.0.0.1", 8123)),
                                        ("[::1]:9000", ("::1", 9000)), ("chief.internal:80", ("chief.internal", 80))])
def test_addresses_parse(text, want):
    assert cluster.parse_address(text) == want


@pytest.mark.parametrize("text", ["", "host:", "host:0", "host:70000", "host:http", "a b:80"])
def test_bad_addresses_are_refused(text):
    with pytest.raises(ValueError, match="--oracle"):
        cluster.parse_address(text)


def test_the_chief_binds_loopback_by_default_and_sets_keras_tuner_s_variables(monkeypatch):
    r = cluster.role("chief")
    assert (r.host, r.port, r.tuner_id) == ("127.0.0.1", cluster.DEFAULT_PORT, "chief")
    assert cluster.security_note(r) is None
    for k in cluster.ENV:  # set, then deleted: monkeypatch puts back what was there before (nothing)
        monkeypatch.setenv(k, "")
        monkeypatch.delenv(k)
    assert cluster.distributed_role() is None
    cluster.apply(cluster.role("worker", "10.1.2.3:8001", "gpu-box-0"))
    assert {k: __import__("os").environ[k] for k in cluster.ENV} == {
        "KERASTUNER_TUNER_ID": "gpu-box-0", "KERASTUNER_ORACLE_IP": "10.1.2.3", "KERASTUNER_ORACLE_PORT": "8001"}
    assert cluster.distributed_role() == "worker"


def test_a_chief_on_an_open_address_is_warned_about():
    note = cluster.security_note(cluster.role("chief", "0.0.0.0:8000"))
    assert "no authentication" in note and "SSH tunnel" in note


@pytest.mark.parametrize("args, message", [
    (("worker", None, None), "needs --oracle"),
    (("worker", "0.0.0.0:8000", None), "chief's own address"),
    (("worker", "10.0.0.1:8000", "my-chief-1"), "not the word 'chief'"),
    (("worker", "10.0.0.1:8000", "a/b"), "letters, digits"),
    (("chief", None, "tuner0"), "--tuner-id is for workers"),
    (("boss", None, None), "chief, worker or local"),
])
def test_roles_that_cannot_work_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        cluster.role(*args)


def test_a_worker_s_default_id_is_stable_and_differs_per_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    first = cluster.role("worker", "127.0.0.1:8000").tuner_id
    assert first == cluster.role("worker", "127.0.0.1:8000").tuner_id and first.endswith("-gpu3")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert cluster.role("worker", "127.0.0.1:8000").tuner_id != first


def test_the_gpus_come_from_cuda_visible_devices_first(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 5")
    assert cluster.gpu_ids() == ["2", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert cluster.gpu_ids() == []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(cluster.shutil, "which", lambda name: None)  # no nvidia-smi: no GPU
    assert cluster.gpu_ids() == []


def test_who_ran_reads_each_worker_s_finished_trials_and_survives_a_cut_line(tmp_path):
    cluster.record(tmp_path, "tuner0", "0", "begin")
    cluster.record(tmp_path, "tuner0", "0", "begin")  # killed, started again
    cluster.record(tmp_path, "tuner0", "0", "end")
    cluster.record(tmp_path, "tuner1", "1", "begin")
    with open(tmp_path / "workers" / "tuner1.jsonl", "a") as f:
        f.write('{"trial": "1", "ev')  # a kill in the middle of a write
    assert cluster.who_ran(tmp_path) == {"0": "tuner0"}
    assert cluster.who_ran(tmp_path / "elsewhere") == {}
    assert json.loads((tmp_path / "workers" / "tuner0.jsonl").read_text().splitlines()[0])["event"] == "begin"


def test_the_launcher_reports_a_chief_that_never_listens_and_leaves_nothing(tmp_path, capsys):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    assert cluster.launch(["--profile", "smoke"], workers=1, python=str(fake)) == 3
    assert "the chief did not start listening" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["tune", "--oracle", "127.0.0.1:8000"], "add --distributed chief|worker"),
    (["tune", "--distributed", "worker"], "needs --oracle"),
    (["tune", "--distributed", "local", "--tuner-id", "x"], "names its workers tuner0"),
    (["tune", "--distributed", "local", "--workers", "0"], "at least 1"),
    (["tune", "--distributed", "chief", "--oracle", "host:port"], "port must be a number"),
])
def test_the_cli_refuses_bad_distributed_options_in_one_line(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
