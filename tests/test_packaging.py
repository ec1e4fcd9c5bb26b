"""The package layout: root folders install inside the distill namespace, prompts as data."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_puts_root_packages_inside_distill(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("distill-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("distill/cli.py", "distill/pipelines/completions.py", "distill/filters/__init__.py",
                   "distill/train/__init__.py", "distill/prompts/__init__.py", "distill/prices.yaml",
                   "distill/backends/llamacpp.py", "distill/testing/openai_server.py"):
        assert module in names, module
    # Nothing generic lands at the top level of site-packages.
    assert not {n.split("/")[0] for n in names} - {"distill"} - {n.split("/")[0] for n in names if ".dist-info" in n}
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "distill = distill.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_namespace_imports():
    import distill.filters
    import distill.pipelines.completions
    import distill.prompts
    import distill.train

    assert Path(distill.pipelines.completions.__file__).parent.name == "pipelines"
    assert "pipelines" not in sys.modules and "filters" not in sys.modules
