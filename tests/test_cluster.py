"""Studies on a cluster: a smoke study through a local 2-worker Dask cluster gives the same
records as the local runner."""

import json

import pytest

from vpstudy.study import run_study, study_runs

pytest.importorskip("distributed")


@pytest.mark.slow
def test_dask_cluster_runs_a_study_like_the_local_runner(tmp_path):
    local, dask = tmp_path / "local", tmp_path / "dask"
    assert run_study("simvp", "smoke", only="Table 2", jobs=2, root=local, executor="command") == 0
    assert run_study("simvp", "smoke", only="Table 2", root=dask, executor="command", cluster="local:2") == 0
    ids = {r.run_id for r in study_runs("simvp", "smoke") if r.table == "Table 2"}
    assert len(ids) == 2
    for run_id in ids:
        a = json.loads((local / run_id / "record.json").read_text())
        b = json.loads((dask / run_id / "record.json").read_text())
        assert a["status"] == b["status"] == "completed"
        assert a["config"] == b["config"]
        for metric in ("mse", "ssim"):       # same seed, same thread count: the same numbers
            assert b["test"][metric] == pytest.approx(a["test"][metric], rel=1e-6), (run_id, metric)


def test_bad_cluster_value_stops_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="local:N"):
        run_study("simvp", "smoke", root=tmp_path, cluster="local:zero")
    assert not any(tmp_path.iterdir())


def test_bad_thread_count_stops_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="threads=0"):
        run_study("simvp", "smoke", root=tmp_path, threads=0)
    assert not any(tmp_path.iterdir())


def test_missing_notebook_stops_before_any_work(tmp_path, monkeypatch):
    import vpstudy.study as study

    monkeypatch.setattr(study, "ABLATION_NOTEBOOK", tmp_path / "nowhere" / "ablation.ipynb")
    with pytest.raises(FileNotFoundError, match="--executor command"):
        run_study("simvp", "smoke", root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_a_run_another_runner_is_training_is_left_alone(tmp_path, capsys, lock_held_elsewhere):
    from vpstudy import runs

    first, second = sorted({r.run_id for r in study_runs("simvp", "smoke") if r.table == "Table 2"})
    busy = runs.RunDir(tmp_path / first)
    lock_held_elsewhere(busy)
    assert run_study("simvp", "smoke", only="Table 2", root=tmp_path, executor="command") == 0
    out = capsys.readouterr().out
    assert f"skipping {first} (Table 2: " in out and "1 in use elsewhere" in out
    assert not busy.exists()                                  # no record written for it, not "failed"
    assert runs.RunDir(tmp_path / second).status() == "completed"
