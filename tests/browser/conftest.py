"""Browser fixtures: Debian's Chromium driven by Playwright, one JupyterLab server per session.

Select these tests with ``-m browser`` (``make browser``); they skip, saying why, when
Chromium or Playwright is missing. Screenshots land in ``tests/browser/screenshots/``.
Never run ``playwright install``: the tests use the system Chromium
(``$EHREXPLAIN_CHROMIUM``, else ``chromium`` on ``PATH``, else ``/usr/bin/chromium``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from browser_support import REPO, SCREENSHOTS, chromium_path, new_page


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    skip = None
    if chromium_path() is None:
        skip = "Chromium not found: install it (Debian: apt-get install chromium) or set EHREXPLAIN_CHROMIUM"
    else:
        try:
            import playwright  # noqa: F401
        except ImportError:
            skip = "Playwright for Python not installed: pip install -e '.[test]'"
    for item in items:
        if "tests/browser" in str(item.fspath):
            item.add_marker(pytest.mark.browser)
            if skip:
                item.add_marker(pytest.mark.skip(reason=skip))


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, request):
    """A fresh page that records page errors; screenshot saved at the end, pass or fail."""
    page = new_page(browser)
    yield page
    SCREENSHOTS.mkdir(exist_ok=True)
    name = request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
    try:
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    finally:
        page.context.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """URL of a JupyterLab (token off, 127.0.0.1) serving a scratch copy of ``notebooks/``."""
    root = tmp_path_factory.mktemp("lab")
    for notebook in (REPO / "notebooks").glob("*.ipynb"):
        shutil.copy(notebook, root / notebook.name)
    settings = root / ".settings"
    _write_settings(settings)
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
        f"--ServerApp.root_dir={root}", "--IdentityProvider.token=", "--ServerApp.password=",
        "--LabApp.expose_app_in_browser=True", f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={root / '.workspaces'}",
    ]  # fmt: skip
    if hasattr(os, "getuid") and os.getuid() == 0:
        command.append("--allow-root")
    log = open(root / "jupyterlab.log", "w")
    server = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(url + "/api/status", server, root / "jupyterlab.log")
        yield SimpleLab(url, root)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _write_settings(folder: Path) -> None:
    """Every cell in the page (no virtual scrolling), no news pop-up."""
    import json

    for plugin, values in {
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }.items():
        package, name = plugin.rsplit("/", 1)
        (folder / package).mkdir(parents=True, exist_ok=True)
        (folder / package / f"{name}.jupyterlab-settings").write_text(json.dumps(values))


@pytest.fixture(scope="session")
def widget_notebooks_run(browser, lab):
    """``(page, failures)``: every widget notebook run in a tab of one JupyterLab page, and checked.

    Shared by the quickstart tests (its kernel is kept, so its controls still answer) and the smoke test.
    """
    from widget_notebooks import QUICKSTART, run_in_tabs, widget_notebooks

    page = new_page(browser)
    try:
        failures = run_in_tabs(page, lab, widget_notebooks(), keep_kernels={QUICKSTART})
        yield page, failures
    finally:
        page.context.close()


class SimpleLab:
    def __init__(self, url: str, root: Path):
        self.url, self.root = url, root


def _wait_for(url: str, server, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer {url} within {timeout} s:\n{log.read_text()[-3000:]}")
