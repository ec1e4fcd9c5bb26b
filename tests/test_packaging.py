"""The package layout: root folders install inside the distill namespace, prompts as data."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_puts_root_packages_inside_distill(tmp_path):
    # Build from a clean copy: a stale build/ folder would hide a package missing from pyproject.
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", "build", "dist", "*.egg-info", "__pycache__", "runs", ".git"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(source)],
        check=True, capture_output=True, cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("distill-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    # Every source file of the tree is in the wheel, at its place in the distill namespace.
    expected = {"distill/prices.yaml", "distill/dataset_card.md.j2"}
    for folder, installed in (("distill", "distill"), ("pipelines", "distill/pipelines"), ("prompts", "distill/prompts"),
                              ("filters", "distill/filters"), ("train", "distill/train")):
        for source in (ROOT / folder).rglob("*"):
            if source.is_file() and "__pycache__" not in source.parts:
                expected.add(f"{installed}/{source.relative_to(ROOT / folder).as_posix()}")
    assert {"distill/commands/zephyr.py", "distill/prompts/ultrachat/materials/labelled.j2",
            "distill/prompts/self_instruct/seed_tasks.jsonl"} <= expected
    assert expected <= names, sorted(expected - names)
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
