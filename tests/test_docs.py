"""The documentation site cannot drift from the code: the CLI page, the nav, the API reference.

CI builds the site with `mkdocs build --strict` (.ci/run), which fails on a broken link or an
API object that no longer exists; these tests check what that build cannot see.
"""

from __future__ import annotations

import difflib
import importlib.util
import re
from pathlib import Path

import yaml

import widedeep

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_cli", DOCS / "gen_cli.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _page_sections(page: str) -> dict[str, str]:
    """`{command: help text}` of the sections of docs/cli.md."""
    return dict(re.findall(r"^#+ `(widedeep[^`]*)`\n\n```text\n(.*?)```$", page, re.M | re.S))


def test_cli_page_is_every_commands_help():
    generator = _load_generator()
    helps = generator.command_helps()
    page = (DOCS / "cli.md").read_text()
    documented = _page_sections(page)
    # Every level of subcommand is there: `prepare`'s sources too.
    assert {"widedeep", "widedeep train", "widedeep prepare log"} <= set(helps)
    problems = [f"{c}: not in docs/cli.md" for c in helps if c not in documented]
    problems += [f"{c}: in docs/cli.md, but no such command" for c in documented if c not in helps]
    for command, text in helps.items():
        if command in documented and documented[command] != text:
            diff = difflib.unified_diff(
                documented[command].splitlines(),
                text.splitlines(),
                "docs/cli.md",
                f"{command} --help",
                lineterm="",
            )
            problems.append(f"{command}: --help differs from docs/cli.md\n" + "\n".join(diff))
    assert not problems, "run `python docs/gen_cli.py`:\n" + "\n".join(problems)
    assert page == generator.render(helps), "docs/cli.md: run `python docs/gen_cli.py`"


def _nav_pages(entries) -> list[str]:
    pages = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_every_nav_page_exists_and_every_page_is_in_the_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    nav = _nav_pages(config["nav"])
    assert "cli.md" in nav and "api/widedeep.md" in nav
    missing = [page for page in nav if not (DOCS / page).is_file()]
    assert not missing, f"pages in mkdocs.yml's nav that docs/ lacks: {missing}"
    pages = sorted(str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md"))
    orphans = [page for page in pages if page not in nav]
    assert not orphans, f"pages in docs/ that mkdocs.yml's nav does not list: {orphans}"


def test_api_reference_lists_every_public_name():
    reference = (DOCS / "api" / "widedeep.md").read_text()
    documented = set(re.findall(r"^::: widedeep\.(\w+)$", reference, re.M))
    modules = {"layers", "optimizers"}  # pages of their own
    assert set(widedeep.__all__) - modules <= documented, "docs/api/widedeep.md lacks " + str(
        sorted(set(widedeep.__all__) - modules - documented)
    )
    for module, page in (
        ("widedeep.layers", "layers.md"),
        ("widedeep.optimizers", "optimizers.md"),
        ("tuning", "tuning.md"),
    ):
        assert f"\n::: {module}\n" in (DOCS / "api" / page).read_text(), page
