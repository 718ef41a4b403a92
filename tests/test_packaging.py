"""The wheel installs one top-level package, ``chainsight``, so an application
with its own ``plugins`` or ``storage`` package can use Chainsight."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"framework": "chainsight/framework", "plugins": "chainsight/plugins",
           "storage": "chainsight/storage", "tui": "chainsight/tui"}


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
            if path.suffix in {".py", ".tcss", ".json"} and "__pycache__" not in path.parts:
                inside = f"{package}/{path.relative_to(REPO / folder).as_posix()}"
                assert inside in shipped, f"{path.relative_to(REPO)} is not in {wheel.name}"
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "chainsight = chainsight.framework.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    target = tmp_path / "site"
    _run(sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target),
         str(wheel), cwd=tmp_path)
    app = tmp_path / "app"
    for own in ("plugins", "storage"):
        (app / own).mkdir(parents=True)
        (app / own / "__init__.py").write_text(f"MINE = {own!r}\n")
    code = (
        f"import sys; sys.path[:0] = [{str(target)!r}]\n"
        "from chainsight import CallbackHandler\n"
        "import chainsight, chainsight.plugins.redaction, chainsight.storage.engine\n"
        "import plugins, storage\n"
        "print(plugins.MINE, storage.MINE)\n"
        "print(plugins.__file__)\n"
        "print(chainsight.__file__)\n"
        "print(chainsight.plugins.redaction.__file__)\n"
        "print(chainsight.storage.engine.MIGRATIONS_DIR.is_dir())\n"
    )
    # -c puts the current folder (the app's) first on sys.path, as a script would
    out = _run(sys.executable, "-c", code, cwd=app).splitlines()
    assert out[0] == "plugins storage"
    assert Path(out[1]) == app / "plugins" / "__init__.py"
    assert Path(out[2]).is_relative_to(target), out[2]
    assert Path(out[3]) == target / "chainsight" / "plugins" / "redaction.py"
    assert out[4] == "True"
