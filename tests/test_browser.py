"""The notebooks in a real headless Chromium.

- Voilà serves the explorer on 127.0.0.1; the test moves the frame slider with the keyboard
  and checks that the displayed frame changes.
- JupyterLab opens report.ipynb and explore.ipynb, runs all cells, and every image in their
  outputs must have loaded (``scripts/screenshots.py`` does the same on the committed runs
  and saves the screenshots under reports/screenshots/).
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def voila(trained_runs, cache_dir, tmp_path):
    root, _, _ = trained_runs
    port = _free_port()
    env = {**os.environ, "VPSTUDY_RUNS": str(root), "VPSTUDY_CACHE": str(cache_dir),
           "OMP_NUM_THREADS": "1"}
    log = open(tmp_path / "voila.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "voila", str(REPO / "notebooks" / "explore.ipynb"), f"--port={port}",
         "--no-browser", "--Voila.ip=127.0.0.1", "--show_tracebacks=True"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=60)
            break
        except OSError:
            time.sleep(0.5)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_time_slider_changes_the_displayed_frame(voila):
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed (scripts/test.sh installs it)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page()
        page.goto(voila, timeout=180_000)
        image = page.locator(".widget-image").first
        image.wait_for(timeout=180_000)
        before = image.get_attribute("src")
        slider = page.locator(".widget-slider", has_text="frame").locator(".noUi-handle").first
        slider.focus()
        assert "frame t=11." in page.inner_text("body")
        for _ in range(3):
            page.keyboard.press("ArrowRight")
        page.wait_for_function("() => /frame t=1[2-9]\\./.test(document.body.innerText)", timeout=60_000)
        page.wait_for_function(
            "before => document.querySelector('.widget-image').getAttribute('src') !== before",
            arg=before, timeout=60_000)
        assert image.get_attribute("src") != before
        # a baseline's checkbox adds its column: the picture and the metrics table change
        shown = image.get_attribute("src")
        page.get_by_label("all black").check()
        page.wait_for_function("() => /all black/.test(document.querySelector('.widget-html table')"
                               "?.innerText || '')", timeout=60_000)
        page.wait_for_function(
            "before => document.querySelector('.widget-image').getAttribute('src') !== before",
            arg=shown, timeout=60_000)
        browser.close()


def _study_row_record(root: Path) -> None:
    """A completed record of the SimVP study's Table 2 StarReLU row (smoke), so that the report
    has study tables: metrics made up, samples blank."""
    import numpy as np

    from vpstudy import runs
    from vpstudy.study import study_runs

    run = next(r for r in study_runs("simvp", "smoke") if r.table == "Table 2" and r.row == "StarReLU")
    rd = runs.RunDir(root / run.run_id)
    per_frame = {k: [v] * 10 for k, v in (("mse", 30.0), ("mae", 60.0), ("ssim", 0.6), ("ssim_strict", 0.5),
                                          ("psnr", 15.0))}
    rd.save({"id": run.run_id, "status": "completed", "config": run.config.to_dict(),
             "history": [{"epoch": 1, "loss": 0.1, "val": {"mse": 30.0, "ssim": 0.6}}],
             "test": {**{k: v[0] for k, v in per_frame.items()}, "per_frame": per_frame, "num_sequences": 8},
             "extra_tests": {}, "efficiency": {"params": 6_456_073, "size_bytes": 25_824_292,
                                               "macs": 694_000_000, "flops": 1_388_000_000},
             "provenance": {"hardware": {"name": "test", "device": "cpu"}, "git_commit": "abc",
                            "precision": "fp32", "torch_version": "2.13.0", "wall_time_s": 1.0}})
    frames = np.zeros((8, 10, 1, 32, 32), np.uint8)
    np.savez_compressed(rd.samples_path, inputs=frames, targets=frames, predictions=frames)


@pytest.mark.slow
def test_report_and_explorer_notebooks_render_in_jupyterlab(trained_runs, cache_dir, tmp_path, monkeypatch):
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed (scripts/test.sh installs it)"
    sys.path.insert(0, str(REPO / "scripts"))
    import screenshots

    root = tmp_path / "runs"                      # the session's runs plus a study row's record
    shutil.copytree(trained_runs[0], root)
    _study_row_record(root)
    from vpstudy.weights import read_manifest  # and the record of the shipped gSTA weights' run

    shipped = read_manifest()["models"]["gsta"]["run_id"]
    shutil.copytree(REPO / "runs" / shipped, root / shipped)
    monkeypatch.setenv("VPSTUDY_CACHE", str(cache_dir))
    before = {p: p.read_bytes() for p in (REPO / "notebooks").glob("*.ipynb")}
    found = screenshots.capture(root, tmp_path / "reports", tmp_path / "shots", tmp_path)
    for name in ("report", "explore"):
        assert found[name], f"{name}.ipynb shows no image"
        assert all(i["loaded"] for i in found[name]), found[name]
        assert not found[name + "_errors"], found[name + "_errors"]
    assert found["report"][0]["src"].startswith("data:image/png;base64,")
    first = found["report_first_screen"]          # the report first, on the first screen
    assert first["heading"] == "vpstudy report" and 0 <= first["top"] < first["view"] / 2, first
    assert first["tables"] and all(t["width"] <= t["pane"] + 1 for t in first["tables"]), first["tables"]
    assert first["overview_open"] == [False]      # the run overview: last, collapsed
    choosers = found["explore_choosers"]
    labels = ("table", "model", "seed", "test set")
    dropdowns = [d.replace("\xa0", " ") for d in choosers["dropdowns"]]
    assert len(dropdowns) == 4 and all(d.startswith(k) for d, k in zip(dropdowns, labels)), choosers
    assert "poolformer" in dropdowns[1] and "simvp · Table 2" in dropdowns[0]
    assert [c.strip("\u200b ") for c in choosers["checkboxes"]] == ["last frame", "all black"]
    assert sorted(p.name for p in (tmp_path / "shots").glob("*.png"))[0] == "explore-1.png"
    assert {p: p.read_bytes() for p in (REPO / "notebooks").glob("*.ipynb")} == before  # nothing saved
    live = found["explore_live"]                  # the shipped weights predict any test sequence
    assert live["run"].startswith("gsta · ") and live["run"].endswith("[shipped weights]"), live["run"]
    assert "Test sequence 123" in live["sequence"]
    assert "test set: 500 sequences (mmnist, 2 digits" in live["sequence"]
    assert "Test sequence 123" in live["3 digits"] and "500 sequences (mmnist, 3 digits" in live["3 digits"]
    assert live["images"] and all(i["loaded"] for i in live["images"]), live["images"]
