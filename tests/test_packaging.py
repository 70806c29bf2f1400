"""The repository's own rules: dependencies declared twice agree, notebooks are stored clean."""
import json
import re
import tomllib

import yaml


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_lists_the_same_dependencies_as_pyproject(repo_root):
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((repo_root / "environment.yml").read_text())["dependencies"]
    pip_deps = next(d["pip"] for d in env if isinstance(d, dict) and "pip" in d)
    normalise = lambda reqs: {_name(r): r.replace(" ", "") for r in reqs}
    assert normalise(pip_deps) == normalise(project), "environment.yml and pyproject.toml disagree"


def test_notebooks_are_stored_without_outputs(repo_root):
    dirty = []
    for path in sorted((repo_root / "solutions").rglob("*.ipynb")) + sorted((repo_root / "notebooks").rglob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count")):
                dirty.append(str(path.relative_to(repo_root)))
                break
    assert not dirty, f"notebooks stored with outputs (clear them): {dirty}"


def test_every_chapter_has_a_student_version(repo_root):
    solutions = {p.relative_to(repo_root / "solutions") for p in (repo_root / "solutions").rglob("*.ipynb")
                 if ".ipynb_checkpoints" not in p.parts}
    released = {p.relative_to(repo_root / "notebooks") for p in (repo_root / "notebooks").rglob("*.ipynb")
                if ".ipynb_checkpoints" not in p.parts}
    assert solutions and solutions == released
