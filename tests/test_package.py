"""What pip installs: qstash_verify.py alone, MIT-licensed, its version written once (make package builds it)."""

from __future__ import annotations

import re

import pytest
from conftest import ROOT

import qstash_verify

PYPROJECT = (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def project() -> dict[str, object]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads(PYPROJECT)["project"]  # type: ignore[no-any-return]


def test_licence_is_mit_by_the_qstash_lambda_authors() -> None:
    licence = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert licence.startswith("MIT License\n\nCopyright (c) 2026 the qstash-lambda authors\n")
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in licence
    assert project()["license"] == "MIT"
    assert project()["license-files"] == ["LICENSE"]


def test_the_version_is_written_once_in_the_module() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", qstash_verify.__version__)
    assert "version" in project()["dynamic"]  # type: ignore[operator]
    assert "version" not in project()
    files = [*ROOT.glob("*.*"), *ROOT.glob("dev/*.*"), *ROOT.glob("examples/*.py"), *ROOT.glob("tests/*.py")]
    sources = [p for p in files if p.suffix in {".py", ".toml", ".md", ".txt", ".cfg"}]
    assert [p.name for p in sources if re.search(r"^__version__\s*=", p.read_text(), re.M)] == ["qstash_verify.py"]
    assert not re.search(r"^version\s*=", PYPROJECT, re.M)


def test_pip_installs_the_module_alone_with_no_dependencies_and_the_command() -> None:
    meta = project()
    assert meta["requires-python"] == ">=3.9"
    assert "dependencies" not in meta
    assert meta["scripts"] == {"qstash-verify": "qstash_verify:_main"}
    assert meta["readme"] == "README.md"
    assert any("Python :: 3.9" in c for c in meta["classifiers"])  # type: ignore[attr-defined]
    assert 'name = "qstash_verify"' in PYPROJECT.split("[tool.flit.module]")[1]
    assert 'build-backend = "flit_core.buildapi"' in PYPROJECT


def test_the_console_script_target_returns_an_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        qstash_verify._main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.split()[-1] == qstash_verify.__version__
    assert qstash_verify._main(["sign", "--url", "u", "--body", "", "--key", " k"]) == 2
