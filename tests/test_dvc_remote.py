"""Data versions on a DVC remote: a run pushes the prepared file's object; a fresh clone pulls
it back by the md5 a model version carries (real git and DVC repos in temporary folders)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from trainyard import cli
from trainyard.data_versions import (
    LOCAL_REMOTE,
    pull_data_version,
    push_data_version,
    remote_for_lineage,
    remote_url,
)
from trainyard.environment import ProjectPaths
from trainyard.errors import DataError
from trainyard.tasks.prepared import file_md5

DATA = "data/forecast/prepared/series.parquet"


def _run(command: list[str], cwd: Path) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout.strip()


def _object(remote: Path | str, md5: str) -> Path:
    return Path(remote) / "files" / "md5" / md5[:2] / md5[2:]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A committed git + DVC repo that git-ignores data/, as DVC outputs are (made once: each
    `dvc` command takes most of a second)."""
    root = tmp_path_factory.mktemp("template") / "project"
    root.mkdir()
    _run(["git", "init", "-q"], root)
    _run(["dvc", "init", "-q"], root)
    _run(["dvc", "config", "core.analytics", "false"], root)
    (root / "params.yaml").write_text("run: {}\n")
    (root / ".gitignore").write_text("/data/\n")
    _run(["git", "add", "-A"], root)
    identity = ["-c", "user.name=trainyard tests", "-c", "user.email=tests@trainyard.invalid"]
    _run(["git", *identity, "commit", "-q", "-m", "project"], root)
    return root


@pytest.fixture
def project(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the template repo with a prepared file (1 MB) and its own state directory."""
    monkeypatch.setenv("TRAINYARD_STATE_DIR", str(tmp_path / "state"))
    for variable in ("GIT_AUTHOR", "GIT_COMMITTER"):
        monkeypatch.setenv(f"{variable}_NAME", "trainyard tests")
        monkeypatch.setenv(f"{variable}_EMAIL", "tests@trainyard.invalid")
    root = tmp_path / "project"
    shutil.copytree(template, root, symlinks=True)
    data = root / DATA
    data.parent.mkdir(parents=True)
    data.write_bytes(bytes(range(256)) * 4096)
    return root


def _clone(project: Path) -> Path:
    clone = project.parent / "clone"
    _run(["git", "clone", "-q", str(project), str(clone)], project.parent)
    return clone


def test_a_fresh_clone_pulls_the_pushed_version_from_the_remote_url(project: Path):
    md5 = file_md5(project / DATA)
    url = push_data_version(project, DATA, md5)

    assert Path(url) == (ProjectPaths(project).state / "dvc-remote").resolve()
    assert _object(url, md5).is_file()
    assert remote_url(project) == url
    local_config = (project / ".dvc" / "config.local").read_text()
    assert LOCAL_REMOTE in local_config and url in local_config
    assert "dvc-remote" not in (project / ".dvc" / "config").read_text()  # nothing committed

    clone = _clone(project)
    assert not (clone / ".dvc" / "config.local").exists()  # so the URL must come from outside
    _run(["rm", "-rf", ".dvc/cache", DATA], project)

    pulled = pull_data_version(clone, DATA, md5, remote=url)

    assert pulled == clone / DATA
    assert file_md5(pulled) == md5
    assert not (clone / ".dvc" / "config.local").exists()  # a URL pull configures nothing
    assert not list(pulled.parent.glob(".tmp-*"))


def test_checkout_in_a_fresh_clone_pulls_through_the_dvc_remote_tag(project: Path):
    md5 = file_md5(project / DATA)
    trained_at = _run(["git", "rev-parse", "HEAD"], project)
    (project / "README.md").write_text("later work\n")
    _run(["git", "add", "README.md"], project)
    _run(["git", "commit", "-q", "-m", "later"], project)
    url = push_data_version(project, DATA, md5)
    tags = {
        "family": "forecast",
        "data_version": md5,
        "data_path": DATA,
        "dvc_remote": remote_for_lineage(project),
    }
    client = MlflowClient()
    name = "dvc-remote-test-forecaster"
    client.create_registered_model(name)
    head = _run(["git", "rev-parse", "HEAD"], project)
    current = client.create_model_version(name, str(project), tags={**tags, "git_commit": head})
    client.set_registered_model_alias(name, "champion", current.version)
    older = {**tags, "git_commit": f"{trained_at}-dirty"}
    old = client.create_model_version(name, str(project), tags=older)
    clone = _clone(project)
    _run(["rm", "-rf", ".dvc/cache"], project)
    params = ["--params", str(clone / "params.yaml")]

    done = CliRunner().invoke(cli.app, ["checkout", f"{name}@champion", *params])

    assert done.exit_code == 0, done.output
    assert file_md5(clone / DATA) == md5
    assert tags["dvc_remote"] == url
    assert "trainyard run --family forecast" in done.output
    assert "git checkout" not in done.output  # the clone is at the version's commit

    (clone / DATA).unlink()
    done = CliRunner().invoke(cli.app, ["checkout", f"{name}/{old.version}", *params])

    assert done.exit_code == 0, done.output
    assert file_md5(clone / DATA) == md5
    assert f"git checkout {trained_at}" in done.output
    assert "uncommitted changes" in done.output


def test_a_missing_object_is_a_data_error_naming_md5_remote_and_what_to_do(project: Path):
    md5 = "0123456789abcdef0123456789abcdef"
    url = remote_url(project)

    with pytest.raises(DataError, match=md5) as error:
        pull_data_version(project, DATA, md5)

    assert url in str(error.value) and "--remote" in str(error.value)
    assert file_md5(project / DATA) != md5  # the file there is left as it was
    assert not list((project / DATA).parent.glob(".tmp-*"))


def test_a_user_configured_default_remote_is_respected(project: Path, tmp_path: Path):
    theirs = tmp_path / "their-remote"
    _run(["dvc", "remote", "add", "-d", "theirs", str(theirs)], project)
    md5 = file_md5(project / DATA)

    url = push_data_version(project, DATA, md5)

    assert Path(url) == theirs
    assert _object(theirs, md5).is_file()
    assert not (ProjectPaths(project).state / "dvc-remote").exists()
    assert not (project / ".dvc" / "config.local").exists()


def test_a_default_set_after_ours_takes_over_from_it(project: Path, tmp_path: Path):
    md5 = file_md5(project / DATA)
    ours = push_data_version(project, DATA, md5)
    theirs = tmp_path / "their-remote"
    _run(["dvc", "remote", "add", "-d", "theirs", str(theirs)], project)

    assert Path(push_data_version(project, DATA, md5)) == theirs
    assert _object(theirs, md5).is_file()
    # Plain `dvc push` follows too: ours no longer shadows theirs from config.local.
    assert "remote = trainyard" not in (project / ".dvc" / "config.local").read_text()
    assert Path(pull_data_version(project, DATA, md5, remote=ours)).is_file()


def test_a_second_push_changes_nothing(project: Path):
    md5 = file_md5(project / DATA)
    url = push_data_version(project, DATA, md5)
    stored = _object(url, md5).stat()
    config = (project / ".dvc" / "config.local").read_text()

    assert push_data_version(project, DATA, md5) == url
    assert _object(url, md5).stat().st_mtime_ns == stored.st_mtime_ns
    assert (project / ".dvc" / "config.local").read_text() == config


def test_a_file_changed_since_the_run_is_not_pushed(project: Path):
    md5 = file_md5(project / DATA)
    (project / DATA).write_bytes(b"changed after the run")

    with pytest.raises(DataError, match=f"not the data version {md5}"):
        push_data_version(project, DATA, md5)

    assert not list((project / ".dvc" / "cache").rglob(md5[2:]))


def test_pull_replaces_a_different_file_and_keeps_it_in_the_cache(project: Path):
    md5 = file_md5(project / DATA)
    push_data_version(project, DATA, md5)
    (project / DATA).write_bytes(b"a newer preparation")
    newer = file_md5(project / DATA)

    pull_data_version(project, DATA, md5)

    assert file_md5(project / DATA) == md5
    assert _object(project / ".dvc" / "cache", newer).is_file()


def test_a_run_reports_the_push_and_only_warns_when_it_fails(
    project: Path, capsys: pytest.CaptureFixture[str]
):
    md5 = file_md5(project / DATA)
    good = SimpleNamespace(family="forecast", prepared=SimpleNamespace(path=DATA, md5=md5))
    gone = SimpleNamespace(family="text", prepared=SimpleNamespace(path="none.parquet", md5=md5))
    gone.prepared.md5 = "f" * 32

    cli._push_data(ProjectPaths(project), [good, gone])

    printed = " ".join(capsys.readouterr().out.split())
    assert f"DVC: data pushed to {remote_url(project)}" in printed
    assert "DVC: text data not pushed" in printed and "none.parquet" in printed


def test_no_dvc_repo_means_no_lineage_remote(tmp_path: Path):
    assert remote_for_lineage(tmp_path) == ""
    with pytest.raises(DataError, match="dvc init"):
        remote_url(tmp_path)


@pytest.mark.slow
def test_plain_dvc_pull_in_a_clone_reads_what_was_pushed(project: Path):
    """The remote holds DVC's own layout: `dvc pull` of a committed .dvc file finds it."""
    (project / ".gitignore").write_text("")
    _run(["dvc", "add", "-q", DATA], project)
    _run(["git", "add", "-A"], project)
    _run(["git", "commit", "-q", "-m", "data"], project)
    md5 = file_md5(project / DATA)
    url = push_data_version(project, DATA, md5)
    clone = _clone(project)

    _run(["dvc", "remote", "add", "--local", "-d", "pushed", url], clone)
    _run(["dvc", "pull", "-q"], clone)

    assert file_md5(clone / DATA) == md5
