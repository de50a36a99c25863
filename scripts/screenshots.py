"""The notebooks as a reader sees them: JupyterLab in headless Chromium, Run All, screenshots.

    python scripts/screenshots.py                      # reports/screenshots/*.png from runs/
    python scripts/screenshots.py --runs DIR --out DIR

Starts JupyterLab on 127.0.0.1 (no token, a throw-away settings folder that turns notebook
windowing off so every cell renders), opens each notebook, runs all its cells, waits until
the kernel is idle, checks that every image in the outputs has loaded (``naturalWidth > 0``)
and saves screenshots while scrolling down the notebook. ``tests/test_browser.py`` drives
the same functions on a tiny runs root.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VISIBLE = ".jp-NotebookPanel:not(.lm-mod-hidden)"      # the notebook tab on screen
IMAGES_LOADED = ("() => Array.from(document.querySelectorAll('" + VISIBLE + " .jp-OutputArea-output img'))"
                 ".map(i => ({loaded: i.complete && i.naturalWidth > 0, src: i.getAttribute('src').slice(0, 40)}))")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def jupyterlab(env: dict[str, str], log_path: Path, timeout: float = 120):
    """A JupyterLab server on 127.0.0.1 serving the repository; yields its base URL."""
    port = free_port()
    settings = Path(tempfile.mkdtemp(prefix="vpstudy-lab-settings-"))
    tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    docmanager = settings / "@jupyterlab" / "docmanager-extension" / "plugin.jupyterlab-settings"
    docmanager.parent.mkdir(parents=True)
    docmanager.write_text(json.dumps({"autosave": False}))      # never write outputs into the repo
    announcements = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    announcements.parent.mkdir(parents=True)
    announcements.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = {**os.environ, **env, "JUPYTERLAB_SETTINGS_DIR": str(settings)}
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--ServerApp.port={port}",
         "--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=", "--ServerApp.password=",
         f"--ServerApp.root_dir={REPO}", "--ServerApp.port_retries=0", "--allow-root"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    try:
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=10)
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"JupyterLab did not start; see {log_path}")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(settings, ignore_errors=True)


ALL_RUN = ("() => { const prompts = Array.from(document.querySelectorAll('" + VISIBLE
           + " .jp-CodeCell .jp-InputPrompt'));"
           " return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent)); }")


def run_all(page, url: str, notebook: str, timeout_ms: int = 120_000, tries: int = 3) -> list[dict]:
    """Open ``notebook`` (relative to the repository) in JupyterLab, run all cells until every
    code cell has run; return the state of every output image (``loaded``, ``src``).

    A Run All issued while the kernel is still connecting can be dropped after the first
    cell, so it is issued again (up to ``tries`` times) while cells remain unrun.
    """
    page.goto(f"{url}/lab/tree/{notebook}?reset", timeout=timeout_ms)    # no restored tabs
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=timeout_ms)
    page.get_by_text("| Idle").first.wait_for(timeout=timeout_ms)       # the kernel is connected
    for attempt in range(tries):
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()
        try:
            page.wait_for_function(ALL_RUN, timeout=timeout_ms)
            break
        except Exception:
            if attempt == tries - 1:
                raise
    page.wait_for_timeout(1500)                  # let images decode
    return page.evaluate(IMAGES_LOADED)


FIRST_SCREEN = ("() => { const out = document.querySelector('" + VISIBLE + " .vpstudy-report');"
                " if (!out) return null; const h = out.querySelector('h1');"
                " const area = out.closest('.jp-OutputArea-output');"
                " return {heading: h ? h.textContent : null, top: h ? h.getBoundingClientRect().top : null,"
                " view: window.innerHeight, tables: Array.from(out.querySelectorAll('table')).map(t =>"
                " ({width: t.getBoundingClientRect().width, pane: area.getBoundingClientRect().width})),"
                " overview_open: Array.from(document.querySelectorAll('" + VISIBLE + " details'))"
                ".map(d => d.open)}; }")
CHOOSERS = ("() => ({dropdowns: Array.from(document.querySelectorAll('" + VISIBLE + " .widget-dropdown'))"
            ".map(d => d.textContent.trim()), checkboxes: Array.from(document.querySelectorAll('" + VISIBLE
            + " .widget-checkbox')).map(d => d.textContent.trim())})")


SHIPPED = "[shipped weights]"                           # the explorer's label of a run with weights/
OUTPUTS_TEXT = ("Array.from(document.querySelectorAll('" + VISIBLE + " .jp-OutputArea'))"
                ".map(o => o.innerText).join('\\n').replace(/\\u00a0/g, ' ')")
PANEL_TEXT = "() => " + OUTPUTS_TEXT                  # every output of the notebook on screen, as text
PANEL_HAS = ("([want, absent]) => { const t = " + OUTPUTS_TEXT + ";"
             " return want.every(w => t.includes(w)) && !absent.some(a => t.includes(a)); }")


def wait_panel(page, want: list[str], absent: list[str] = (), timeout_ms: int = 120_000) -> str:
    """Wait until the notebook's outputs show every text of ``want`` and none of ``absent``."""
    page.wait_for_function(PANEL_HAS, arg=[list(want), list(absent)], timeout=timeout_ms)
    page.wait_for_timeout(1500)                  # let the new picture decode
    return page.evaluate(PANEL_TEXT)


def explore_live(page, out: Path | None, index: int = 123, timeout_ms: int = 120_000) -> dict:
    """In the explorer (its notebook run): choose the first run with shipped weights alone, show
    test sequence ``index`` of its fixed test set, then the same index of the 3-digit set, both
    predicted live from the weights. Returns the panel's text of each view and its images;
    saves ``explore-seq{index}.png`` and ``explore-3-digits.png`` under ``out``."""
    chooser = page.locator(VISIBLE + " .widget-select-multiple select").first
    values = chooser.evaluate("s => Array.from(s.options).map(o => [o.value, o.textContent.replace(/\\u00a0/g, ' ')])")
    live = [(value, text.strip()) for value, text in values if SHIPPED in text]
    if not live:
        raise RuntimeError(f"no run with shipped weights among the explorer's runs: {[t for _, t in values]}")
    chooser.select_option(value=live[0][0])
    wait_panel(page, ["test set: ", " sequences ("], ["have no checkpoint"], timeout_ms)
    handle = page.locator(VISIBLE + " .widget-slider", has_text="sequence").locator(".noUi-handle").first
    handle.focus()                               # the keyboard, as a person would: Home, then
    page.keyboard.press("Home")                  # PageUp (5 sequences) and ArrowRight (1)
    for key, times in (("PageUp", index // 5), ("ArrowRight", index % 5)):
        for _ in range(times):
            page.keyboard.press(key)
    shown = f"Test sequence {index}"
    views = {"run": live[0][1], "sequence": wait_panel(page, [shown], [], timeout_ms)}
    picture = page.locator(VISIBLE + " .widget-image").first
    picture.scroll_into_view_if_needed()
    if out is not None:
        page.screenshot(path=str(out / f"explore-seq{index}.png"))
    page.locator(VISIBLE + " .widget-dropdown", has_text="test set").locator("select").select_option(label="3 digits")
    views["3 digits"] = wait_panel(page, ["3 digits, profile", shown], [], timeout_ms)
    picture.scroll_into_view_if_needed()
    if out is not None:
        page.screenshot(path=str(out / "explore-3-digits.png"))
    views["images"] = page.evaluate(IMAGES_LOADED)
    return views


def output_errors(page) -> list[str]:
    return page.evaluate("() => Array.from(document.querySelectorAll('.jp-RenderedText[data-mime-type="
                         "\"application/vnd.jupyter.stderr\"], .jp-OutputArea-output pre'))"
                         ".map(e => e.textContent).filter(t => /Traceback|Error/.test(t))")


def screenshots(page, out: Path, stem: str, shots: int = 3) -> list[Path]:
    """Screenshots of the notebook from top to bottom, ``shots`` viewport heights apart."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    scroller = VISIBLE + " .jp-WindowedPanel-outer"
    height = page.evaluate(f"() => document.querySelector('{scroller}')?.scrollHeight || 0")
    view = page.viewport_size["height"]
    for k in range(shots):
        top = min(k * (view - 150), max(0, height - view))
        page.evaluate(f"() => {{ const s = document.querySelector('{scroller}'); if (s) s.scrollTop = {top}; }}")
        page.wait_for_timeout(400)
        path = out / f"{stem}-{k + 1}.png"
        page.screenshot(path=str(path))
        paths.append(path)
        if top >= height - view:
            break
    return paths


def capture(runs_root: Path, reports: Path, out: Path | None, log_dir: Path,
            live_index: int | None = 123) -> dict[str, list[dict]]:
    """Run report.ipynb and explore.ipynb in JupyterLab; return each one's output images (and,
    with ``live_index``, the explorer's live views of that test sequence: `explore_live`)."""
    from playwright.sync_api import sync_playwright

    env = {"VPSTUDY_RUNS": str(runs_root), "VPSTUDY_REPORTS": str(reports), "OMP_NUM_THREADS": "1"}
    found = {}
    with jupyterlab(env, log_dir / "jupyterlab.log") as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        for name in ("report", "explore"):
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()                 # one page per notebook: no unload prompts
            try:
                found[name] = run_all(page, url, f"notebooks/{name}.ipynb")
            except Exception:
                page.screenshot(path=str(log_dir / f"{name}-failed.png"))
                raise
            found[name + "_errors"] = output_errors(page)
            if name == "report":                     # the first screen, before any scrolling
                scroller = VISIBLE + " .jp-WindowedPanel-outer"
                page.evaluate(f"() => {{ const s = document.querySelector('{scroller}'); if (s) s.scrollTop = 0; }}")
                found["report_first_screen"] = page.evaluate(FIRST_SCREEN)
            else:
                found["explore_choosers"] = page.evaluate(CHOOSERS)
            if out is not None:
                screenshots(page, out, name, shots=4 if name == "report" else 1)
            if name == "explore" and live_index is not None:
                try:
                    found["explore_live"] = explore_live(page, out, live_index)
                except Exception:
                    page.screenshot(path=str(log_dir / "explore-live-failed.png"))
                    raise
            context.close()
        browser.close()
    return found


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default=str(REPO / "runs"))
    ap.add_argument("--reports", default=str(REPO / "reports"))
    ap.add_argument("--out", default=str(REPO / "reports" / "screenshots"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as logs:
        found = capture(Path(args.runs), Path(args.reports), Path(args.out), Path(logs))
    for name in ("report", "explore"):
        images = found[name]
        bad = [i for i in images if not i["loaded"]]
        print(f"{name}.ipynb: {len(images)} images, {len(bad)} not loaded; errors: {found[name + '_errors']}")
        if bad or not images or found[name + "_errors"]:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
