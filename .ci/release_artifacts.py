"""Helpers of .ci/release_check, run by the project's .venv python (standard library only).

``release_artifacts.py constraints SDK_PIN OUT``: writes the constraints the
fresh environments install with: the sentry-sdk pin (constraints/sentry-sdk.txt)
and every ``==`` pin of pyproject.toml's ``dev`` extra (extras stripped, which
pip refuses in a constraints file), so that each extra resolves its framework
to the release the test suite ran against.

``release_artifacts.py check DIST SRC``: DIST holds exactly one sdist and one
wheel of the version written in SRC/asgi_sentry_ctx/__init__.py; the wheel has
every module of the source package and nothing else at its top level, py.typed,
the license file, the pytest11 entry point and the metadata a package index
page needs; the sdist has the sources, the license, the changelog and pyproject.toml.
"""

from __future__ import annotations

import ast
import re
import sys
import tarfile
import tomllib
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

PACKAGE = "asgi_sentry_ctx"
EXTRAS = {"starlette", "fastapi", "litestar", "quart", "structlog"}
URLS = {"Homepage", "Documentation", "Repository", "Changelog", "Issues"}


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "constraints":
        write_constraints(Path(argv[1]), Path(argv[2]))
        return 0
    if len(argv) == 3 and argv[0] == "check":
        print(check(Path(argv[1]), Path(argv[2])))
        return 0
    print("usage: release_artifacts.py constraints SDK_PIN OUT | check DIST SRC", file=sys.stderr)
    return 2


def write_constraints(sdk_pin: Path, out: Path) -> None:
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text())["project"]
    pins = []
    for requirement in project["optional-dependencies"]["dev"]:
        match = re.fullmatch(r"([A-Za-z0-9._-]+)(\[[^\]]*\])?\s*(==\s*\S+)", requirement.strip())
        if match:
            pins.append(f"{match[1]}{match[3].replace(' ', '')}")
    sdk = [line for line in sdk_pin.read_text().splitlines() if line.strip().startswith("sentry")]
    assert len(sdk) == 1, f"{sdk_pin}: not one sentry-sdk line"
    assert "==" in sdk[0], f"{sdk_pin}: no sentry-sdk== pin"
    out.write_text("\n".join([sdk[0].strip(), *pins]) + "\n")


def source_version(src: Path) -> str:
    tree = ast.parse((src / PACKAGE / "__init__.py").read_text())
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["__version__"]
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    raise AssertionError(f"no __version__ = '...' in {src / PACKAGE / '__init__.py'}")


def check(dist: Path, src: Path) -> str:
    version = source_version(src)
    files = sorted(p.name for p in dist.iterdir())
    wheel_name = f"{PACKAGE}-{version}-py3-none-any.whl"
    sdist_name = f"{PACKAGE}-{version}.tar.gz"
    assert files == sorted([wheel_name, sdist_name]), f"dist/ holds {files}"
    modules = {p.relative_to(src).as_posix() for p in (src / PACKAGE).rglob("*.py")}
    modules.add(f"{PACKAGE}/py.typed")

    with zipfile.ZipFile(dist / wheel_name) as wheel:
        names = set(wheel.namelist())
        info = f"{PACKAGE}-{version}.dist-info"
        missing = modules - names
        assert not missing, f"the wheel lacks {sorted(missing)}"
        strays = {n for n in names if not n.startswith((f"{PACKAGE}/", f"{info}/"))}
        assert not strays, f"the wheel has files outside the package: {sorted(strays)}"
        assert f"{info}/licenses/LICENSE" in names, "no LICENSE in the wheel"
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
        assert f"[pytest11]\n{PACKAGE} = {PACKAGE}.pytest_plugin" in entry_points, entry_points
        metadata = Parser().parsestr(wheel.read(f"{info}/METADATA").decode())
    check_metadata(metadata, version)

    with tarfile.open(dist / sdist_name) as sdist:
        root = f"{PACKAGE}-{version}"
        names = {m.name.removeprefix(f"{root}/") for m in sdist.getmembers()}
    missing = (modules | {"LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml"}) - names
    assert not missing, f"the sdist lacks {sorted(missing)}"
    return (
        f"artifacts: {sdist_name} and {wheel_name}: {len(modules)} package files each, "
        "LICENSE, pytest11 entry point, metadata (license, URLs, classifiers, extras)"
    )


def check_metadata(metadata: Message, version: str) -> None:
    get = metadata.get
    get_all = metadata.get_all
    assert get("Name") == "asgi-sentry-ctx", get("Name")
    assert get("Version") == version, get("Version")
    assert get("License-Expression") == "MIT", get("License-Expression")
    assert get("Requires-Python") == ">=3.11", get("Requires-Python")
    assert get("Description-Content-Type") == "text/markdown", get("Description-Content-Type")
    urls = {line.split(",", 1)[0].strip() for line in get_all("Project-URL") or []}
    assert urls == URLS, f"Project-URL: {sorted(urls)}"
    assert set(get_all("Provides-Extra") or []) >= EXTRAS | {"dev"}, get_all("Provides-Extra")
    classifiers = set(get_all("Classifier") or [])
    for needed in (
        "Framework :: FastAPI",
        "Framework :: Litestar",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Topic :: System :: Monitoring",
        "Typing :: Typed",
    ):
        assert needed in classifiers, f"no classifier {needed!r}"
    requires = get_all("Requires-Dist") or []
    assert any(r.startswith("sentry-sdk") and "extra" not in r for r in requires), requires


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
