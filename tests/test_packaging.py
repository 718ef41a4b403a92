"""The wheel installs one top-level package, ``chainsight``, so an application
with its own ``plugins`` or ``storage`` package can use Chainsight: installed
into a fresh venv, offline."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"chainsight": "chainsight", "framework": "chainsight/framework",
           "plugins": "chainsight/plugins", "storage": "chainsight/storage", "tui": "chainsight/tui"}


def _run(*cmd: str, cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert proc.returncode == 0, f"{' '.join(cmd)} (in {cwd}) failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_wheel_has_one_top_level_package_that_an_app_can_import(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels), str(REPO), cwd=tmp_path)
    (wheel,) = wheels.glob("chainsight-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"chainsight"}
    assert [t for t in top if t.endswith(".dist-info")] == [f"{wheel.name.split('-py3')[0]}.dist-info"]

    # every module and data file of the repository's folders is in it
    shipped = set(names)
    for folder, package in FOLDERS.items():
        for path in (REPO / folder).rglob("*"):
            if path.suffix in {".py", ".tcss", ".json", ".jsonl"} and "__pycache__" not in path.parts:
                inside = f"{package}/{path.relative_to(REPO / folder).as_posix()}"
                assert inside in shipped, f"{path.relative_to(REPO)} is not in {wheel.name}"
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "chainsight = chainsight.framework.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    # A fresh venv with only the wheel installed in it (no index, no
    # dependencies). Its dependencies come from this environment's
    # site-packages through a .pth path line: a folder named by a .pth is only
    # put on sys.path (its own .pth files, this checkout's editable finder
    # among them, are not run), and after the venv's own site-packages.
    fresh = tmp_path / "fresh"
    _run(sys.executable, "-m", "venv", "--without-pip", str(fresh), cwd=tmp_path)
    python = fresh / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
         "-q", str(wheel), cwd=tmp_path)
    (fresh_site,) = (Path(p) for p in _run(
        str(python), "-c", "import site; print(*site.getsitepackages(), sep=chr(10))", cwd=tmp_path,
    ).split())
    assert (fresh_site / "chainsight" / "__init__.py").is_file()
    dev_site = Path(sysconfig.get_paths()["purelib"])
    assert dev_site != fresh_site and (dev_site / "sqlalchemy").is_dir()
    (fresh_site / "zz_chainsight_test_dependencies.pth").write_text(f"{dev_site}\n")

    app = tmp_path / "app"
    for own in ("plugins", "storage"):
        (app / own).mkdir(parents=True)
        (app / own / "__init__.py").write_text(f"MINE = {own!r}\n")
    code = (
        "import sys\n"
        "from chainsight import CallbackHandler\n"
        "import chainsight, chainsight.plugins.redaction, chainsight.storage.engine\n"
        "import plugins, storage\n"
        "print(plugins.MINE, storage.MINE)\n"
        "print(plugins.__file__)\n"
        "print(chainsight.__file__)\n"
        "print(chainsight.plugins.redaction.__file__)\n"
        "print(chainsight.storage.engine.MIGRATIONS_DIR.is_dir())\n"
        "print(CallbackHandler.__module__, sys.modules[CallbackHandler.__module__].__file__)\n"
    )
    # -c puts the current folder (the app's) first on sys.path, as a script would
    out = _run(str(python), "-c", code, cwd=app).splitlines()
    assert out[0] == "plugins storage"
    assert Path(out[1]) == app / "plugins" / "__init__.py"
    assert Path(out[2]) == fresh_site / "chainsight" / "__init__.py", out[2]
    assert Path(out[3]) == fresh_site / "chainsight" / "plugins" / "redaction.py"
    assert out[4] == "True"
    module, path = out[5].split(" ", 1)
    assert module == "chainsight.framework.adapters.langchain"
    assert Path(path) == fresh_site / "chainsight" / "framework" / "adapters" / "langchain.py"
    # the console script of the wheel runs from the fresh venv
    help_text = _run(str(fresh / "bin" / "chainsight"), "--help", cwd=app)
    assert "traces" in help_text and "show" in help_text
