"""The documentation: README.md stays short and keeps its two quick-start commands, every page under
docs/ is reachable from the site's navigation, links between pages point at pages that exist, and
the site builds with warnings as errors (where mkdocs is installed: the ``docs`` extra)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"
README_LIMIT = 15_000
QUICK_START = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 -e . && bench run",
    "python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 -e '.[test]' && pytest",
)


class _Loader(yaml.SafeLoader):
    """mkdocs.yml may hold ``!!python/name:`` tags (some extensions use them): read them as text."""


_Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: str(suffix))


def mkdocs_config() -> dict:
    return yaml.load((REPO / "mkdocs.yml").read_text(), Loader=_Loader)


def nav_pages(nav) -> list[str]:
    """Every page file named in a mkdocs nav (nested sections, titled or bare entries)."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for entry in nav for page in nav_pages(entry)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    return []


def doc_pages() -> list[str]:
    return sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))


def fenced_blocks(text: str) -> list[str]:
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M)


def test_readme_is_short():
    size = len(README.read_text(encoding="utf-8"))
    assert size <= README_LIMIT, f"README.md has {size} characters; move the detail to a page under docs/"


def test_readme_quick_start_is_the_two_commands():
    text = README.read_text(encoding="utf-8")
    quick = text[text.index("## Quick start"):]
    quick = quick[:quick.index("\n## ", 1)]
    commands = [block.strip() for block in fenced_blocks(quick)]
    assert commands == list(QUICK_START)
    assert "bench run" in commands[0] and commands[1].endswith("pytest")


def test_every_doc_page_is_in_the_nav_and_every_nav_entry_exists():
    pages = nav_pages(mkdocs_config()["nav"])
    assert len(pages) == len(set(pages)), "a page is listed twice in the nav"
    assert set(doc_pages()) - set(pages) == set(), "pages missing from mkdocs.yml's nav"
    assert set(pages) - set(doc_pages()) == set(), "nav entries without a page"
    assert pages[0] == "index.md"


def test_links_point_at_pages_that_exist():
    """README's links into docs/ and the pages' relative links to each other name real files."""
    link = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
    missing = []
    for path in [README, *DOCS.rglob("*.md")]:
        for target in link.findall(path.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (path.parent / target).exists():
                missing.append(f"{path.relative_to(REPO)} -> {target}")
    assert missing == []


def test_plugin_guide_keeps_its_example_files():
    """tests/test_plugin_guide.py runs these; the markers must stay on the page it reads."""
    text = (DOCS / "plugins.md").read_text(encoding="utf-8")
    names = re.findall(r"<!-- plugin-example: (\S+) -->", text)
    assert names == ["pyproject.toml", "bench_example.py", "make_tones.py"]


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None,
                    reason="mkdocs is not installed (pip install -e '.[docs]'); .ci/run builds the site")
def test_site_builds_strict(tmp_path):
    mkdocs = shutil.which("mkdocs") or ""
    command = [mkdocs] if mkdocs else [sys.executable, "-m", "mkdocs"]
    result = subprocess.run([*command, "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "plugins" / "index.html").is_file()
    reference = (tmp_path / "site" / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    assert "SpeechCTCModel" in reference and "bench_register_models" in reference and "BenchError" in reference


# The loop is being rewritten as the public engine; its one remaining hint ("see README, Plugins")
# goes with that rewrite (it should say "see docs/plugins.md").
HINTS_PENDING: set[str] = set()


def test_messages_name_doc_pages_not_readme_sections():
    """Error hints and messages point at pages under docs/, which is where the sections now live."""
    offenders = {
        path.relative_to(REPO).as_posix()
        for folder in ("harness", "plugins")
        for path in (REPO / folder).rglob("*.py")
        if "README" in path.read_text(encoding="utf-8")
    }
    assert offenders - HINTS_PENDING == set()
    sources = [p for folder in ("harness", "plugins", "tests", "benchmarks") for p in (REPO / folder).rglob("*.py")]
    for path in [*sources, REPO / "pyproject.toml", REPO / "bench.toml", REPO / ".ci" / "run"]:
        text = path.read_text(encoding="utf-8")
        for page in re.findall(r"docs/([\w/-]+\.md)", text):
            assert (DOCS / page).is_file(), f"{path.relative_to(REPO)} names docs/{page}, which does not exist"
