"""The Binder set-up: repo2docker accepts it offline, and its pins match what CI tests."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def binder_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "binder" / "requirements.txt").read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s#]+)", line.strip())
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def test_repo2docker_plans_python_312_requirements_and_postbuild():
    repo2docker = Path(sys.executable).with_name("repo2docker")
    plan = subprocess.run(
        [str(repo2docker), "--no-build", "--debug", str(ROOT)], capture_output=True, text=True, timeout=120
    )
    assert plan.returncode == 0, plan.stderr[-2000:]
    dockerfile = plan.stdout + plan.stderr
    assert "python=3.12" in dockerfile
    assert 'pip install --no-cache-dir -r "binder/requirements.txt"' in dockerfile
    assert "./binder/postBuild" in dockerfile


def test_binder_pins_satisfy_pyproject():
    from packaging.requirements import Requirement

    pins = binder_pins()
    assert pins["torch"].endswith("+cpu"), "Binder should get the small CPU-only torch"
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in map(Requirement, declared):
        name = requirement.name.lower()
        if name in ("ipywidgets", "jupyterlab"):
            continue  # provided by Binder's base image
        assert name in pins, f"binder/requirements.txt does not pin {name}"
        assert requirement.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} violates {requirement}"


def test_postbuild_installs_the_package_without_dependencies():
    post_build = (ROOT / "binder" / "postBuild").read_text()
    assert "pip install --no-deps -e ." in post_build
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.12"


def test_quickstart_kernel_fits_binder_memory():
    """Binder gives 1-2 GB; the landing notebook's kernel must peak below 1.5 GB."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from notebook_memory import kernel_peak_mib

    peak = kernel_peak_mib(ROOT / "notebooks" / "00_quickstart.ipynb")
    print(f"00_quickstart kernel peak: {peak:.0f} MiB")
    assert peak < 1536, f"quickstart kernel peaked at {peak:.0f} MiB, above the 1.5 GB Binder budget"


def test_make_lab_opens_the_quickstart_also_as_root():
    """The README's first command: JupyterLab on the notebooks (root needs --allow-root, e.g. in Docker)."""
    import os

    plan = subprocess.run(["make", "--no-print-directory", "-n", "lab"], cwd=ROOT, capture_output=True, text=True, check=True)
    (command,) = [line for line in plan.stdout.splitlines() if "jupyter lab" in line]
    assert "jupyter lab --notebook-dir=notebooks" in command and command.endswith("notebooks/00_quickstart.ipynb")
    assert ("--allow-root" in command) == (os.getuid() == 0)
