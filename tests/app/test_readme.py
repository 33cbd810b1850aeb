"""The README as a newcomer reads it: small, and every command in its Run, Test and Offline blocks real.

Each command is checked without running it: the files it names are there, ``python app.py`` and
``python -m senet_demo`` take its flags (parsed by their own parsers, the work they would start replaced), the
modules it runs exist, and the test command is the one CI runs.
"""
from __future__ import annotations

import importlib.util
import re
import shlex

import pytest

from fixtures import REPO_ROOT

README = REPO_ROOT / "README.md"
MAX_BYTES = 12 * 1024


def section_commands(title: str) -> list[list[str]]:
    """The commands of the ```bash blocks under ``## title``, split at ``&&``, comments dropped."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## )", text, flags=re.MULTILINE | re.DOTALL)
    assert match, f"README has no '## {title}' section"
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", match.group(1), flags=re.DOTALL):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line:
                commands += [shlex.split(part) for part in line.split("&&")]
    assert commands, f"no commands under '## {title}'"
    return commands


def check(command: list[str], monkeypatch) -> None:
    """That ``command`` would run here as written, without running it."""
    program, *args = command
    if program == ".":  # `. .venv/bin/activate`: made by `python3 -m venv .venv` just before
        assert args == [".venv/bin/activate"]
    elif program == "pip":
        assert args[0] == "install"
        files = [args[i + 1] for i, arg in enumerate(args) if arg == "-r"]
        assert files and all((REPO_ROOT / f).is_file() for f in files), command
    elif program in ("python", "python3"):
        if args[0] == "-m":
            check_module(args[1], args[2:], monkeypatch)
        else:
            assert args[0] == "app.py" and (REPO_ROOT / "app.py").is_file()
            check_app_flags(args[1:])
    else:
        pytest.fail(f"unexpected program in the README: {command}")


def check_app_flags(flags: list[str]) -> None:
    import app

    parsed = app.parse_args(flags)  # a flag app.py does not take exits here, with status 2
    assert vars(parsed)


def check_module(module: str, args: list[str], monkeypatch) -> None:
    if module == "venv":
        assert args == [".venv"] and importlib.util.find_spec("venv")
    elif module == "pytest":
        assert args == [] and importlib.util.find_spec("pytest")
        assert "\npython -m pytest\n" in (REPO_ROOT / ".ci" / "run").read_text()  # the command CI runs
    elif module == "senet_demo":
        from senet_demo import __main__ as cli

        ran = []
        for handler in ("_download", "_classify", "_retrieve", "_evaluate", "_explain", "_export_lite0"):
            monkeypatch.setattr(cli, handler, lambda parsed, name=handler: ran.append((name, parsed)) or 0)
        assert cli.main(args) == 0, args  # a flag or subcommand the CLI does not take exits with status 2 here
        assert len(ran) == 1
    else:
        pytest.fail(f"unexpected module in the README: python -m {module}")


def test_the_readme_is_small():
    assert README.stat().st_size <= MAX_BYTES


@pytest.mark.parametrize("section", ["Run", "Test", "Offline use"])
def test_every_command_of_a_section_would_run_as_written(section, monkeypatch):
    commands = section_commands(section)
    for command in commands:
        check(command, monkeypatch)


def test_run_and_test_are_one_command_each():
    assert len(section_commands("Run")) >= 1 and "python app.py" in README.read_text()
    for title in ("Run", "Test"):
        text = README.read_text(encoding="utf-8")
        block = re.search(rf"^## {title}\s*$.*?```bash\n(.*?)```", text, flags=re.MULTILINE | re.DOTALL).group(1)
        assert len([line for line in block.splitlines() if line.strip()]) == 1, block
    assert section_commands("Test")[-1] == ["python", "-m", "pytest"]


def test_the_readme_links_only_to_files_that_exist():
    text = README.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        if not target.startswith(("http://", "https://")):
            assert (REPO_ROOT / target).exists(), target
