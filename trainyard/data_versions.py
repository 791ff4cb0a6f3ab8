"""Data versions on a DVC remote: push the prepared file a model was trained on, pull it back.

A data version is the DVC md5 of a family's prepared file. After every run its object is
pushed from the DVC cache to a DVC remote, so a fresh clone can fetch the exact bytes a
registered model version was trained on (its `data_version`, `data_path` and `dvc_remote`
tags).

Which remote: the repo's default remote when the user configured one (`dvc remote add -d NAME
URL`, at any config level), otherwise a local directory remote `<state dir>/dvc-remote` named
`trainyard` that is configured on first use in `.dvc/config.local`: that file is not
committed, so nothing is imposed on other clones, and plain `dvc push` / `dvc pull` in this
checkout use the same remote. A clone finds it through the model version's `dvc_remote` tag
(the URL, absolute), or through `--remote`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from trainyard.environment import ProjectPaths
from trainyard.errors import ConfigError, DataError

if TYPE_CHECKING:
    from dvc.repo import Repo
    from dvc_data.hashfile.db import HashFileDB

LOCAL_REMOTE = "trainyard"  # the name of the local directory remote trainyard configures
HASH_NAME = "md5"  # DVC 3's hash of a file output: .dvc/cache/files/md5/<2>/<30>
USER_LEVELS = ("system", "global", "repo")  # config levels whose default remote is the user's


def remote_url(root: Path) -> str:
    """Returns the URL of the DVC remote trainyard pushes to, configuring the local default
    (`<state dir>/dvc-remote` in .dvc/config.local) when no default remote is configured."""
    return _default_remote(Path(root).resolve())[1]


def remote_for_lineage(root: Path) -> str:
    """Returns the remote URL to record as a model version's `dvc_remote` tag (the one
    `push_data_version` pushes to, configured as `remote_url` does), or "" when `root` is not
    a DVC repo or its DVC config cannot be read: a tag must never stop a registration."""
    try:
        return remote_url(root)
    except Exception:  # noqa: BLE001 - any failure means there is no remote to record
        return ""


def push_data_version(root: Path, path: Path | str, md5: str) -> str:
    """Returns the remote URL after pushing data version `md5` there from the DVC cache.

    The object is added to the cache from the file at `path` (relative to `root` or absolute)
    when the cache lacks it, once the file's md5 is checked. Pushing an object the remote has
    is a no-op.
    """
    from dvc.fs import localfs
    from dvc_data.hashfile.hash import file_md5

    root = Path(root).resolve()
    name, url = _default_remote(root)
    with _quiet_dvc(), _open_repo(root) as repo:
        cache = repo.cache.local
        if not cache.exists(md5):
            file = _absolute(root, path)
            if not file.is_file():
                raise DataError(
                    f"{file}: no such file, and data version {md5} is not in the DVC cache "
                    f"{cache.path}; run `trainyard prepare` for its family, then push again"
                )
            actual = file_md5(str(file))
            if actual != md5:
                raise DataError(
                    f"{file}: its md5 is {actual}, not the data version {md5} being pushed: "
                    "the file changed after the run; rerun the pipeline to push what it uses"
                )
            cache.add(str(file), localfs, md5, verify=True)
            if not cache.exists(md5):  # verify=True drops a copy whose bytes changed
                raise DataError(f"{file}: changed while it was copied into the DVC cache")
        odb = repo.cloud.get_remote_odb(name, "push")
        result = repo.cloud.push([_hash_info(md5)], odb=odb)
        if result.failed or not odb.exists(md5):
            raise DataError(f"data version {md5}: could not be pushed to the DVC remote {url}")
    return url


def pull_data_version(root: Path, path: Path | str, md5: str, remote: str | None = None) -> Path:
    """Returns the file at `path` holding data version `md5`, fetched from the DVC remote.

    `remote` is a remote URL or the name of a configured remote; None means `remote_url`'s.
    The file is written atomically and its md5 checked; a file it replaces is kept in the
    DVC cache first.
    """
    from dvc_data.hashfile.hash import file_md5

    root = Path(root).resolve()
    target = _absolute(root, path)
    if target.is_file() and file_md5(str(target)) == md5:
        return target
    if remote is None:
        name, url = _default_remote(root)
    with _quiet_dvc(), _open_repo(root) as repo:
        if remote is not None:
            name, url = _named_or_url(repo, remote)
        odb = _remote_odb(repo, name, url)
        cache = repo.cache.local
        if not cache.exists(md5):
            repo.cloud.pull([_hash_info(md5)], odb=odb)
        if not cache.exists(md5):
            raise DataError(
                f"data version {md5} ({path}) is neither on the DVC remote {url} nor in the "
                f"DVC cache {cache.path}. Push it where the model was trained (`trainyard run` "
                "pushes its data; `dvc push` pushes committed outputs), or pass `--remote URL` "
                "naming the remote it went to (the model version's dvc_remote tag)"
            )
        if target.is_file():
            _keep_in_cache(repo, target)
        _copy_verified(Path(cache.oid_to_path(md5)), target, md5)
    return target


def _default_remote(root: Path) -> tuple[str, str]:
    """Returns (name, URL) of the remote to push to, configuring ours when there is none."""
    from dvc.config import Config

    if not (root / ".dvc").is_dir():
        raise DataError(f"{root}: not a DVC repository (no .dvc/); run `dvc init` there first")
    config = Config(dvc_dir=str(root / ".dvc"))
    local_default = config.load_one("local")["core"].get("remote")
    user_default = None
    for level in USER_LEVELS:
        user_default = config.load_one(level)["core"].get("remote") or user_default
    if local_default and local_default != LOCAL_REMOTE:
        name = local_default  # the user's own `dvc remote add -d --local`
    elif user_default:
        name = user_default
        if local_default == LOCAL_REMOTE:
            # Ours would shadow the default the user set since: plain `dvc push` goes theirs.
            with config.edit("local") as local:
                local["core"].pop("remote", None)
    else:
        name = LOCAL_REMOTE
        if local_default != LOCAL_REMOTE or LOCAL_REMOTE not in config["remote"]:
            folder = (ProjectPaths(root).state / "dvc-remote").resolve()
            with config.edit("local") as local:
                local["remote"].setdefault(LOCAL_REMOTE, {})["url"] = str(folder)
                local["core"]["remote"] = LOCAL_REMOTE
        config = Config(dvc_dir=str(root / ".dvc"))
    try:
        return name, str(config["remote"][name]["url"])
    except KeyError:
        raise ConfigError(
            f"{root / '.dvc'}: the default DVC remote {name!r} is not defined; add it with "
            f"`dvc remote add -d {name} URL` or unset it with `dvc remote default --unset`"
        ) from None


def _named_or_url(repo: Repo, remote: str) -> tuple[str | None, str]:
    """Returns (name, URL) for a configured remote's name or URL (its settings, such as
    credentials, then apply), else (None, remote): an unconfigured URL."""
    for name, settings in repo.config["remote"].items():
        if remote in (name, str(settings.get("url"))):
            return name, str(settings["url"])
    return None, remote


def _remote_odb(repo: Repo, name: str | None, url: str) -> HashFileDB:
    """Returns the object database of a configured remote, or of the remote at `url`."""
    if name is not None:
        return repo.cloud.get_remote_odb(name, "pull")
    from dvc.data_cloud import Remote
    from dvc.fs import get_cloud_fs

    cls, config, fs_path = get_cloud_fs(repo.config, url=url)
    return Remote(url, fs_path, cls(**config), **config).odb


def _keep_in_cache(repo: Repo, file: Path) -> None:
    """Adds the file about to be replaced to the DVC cache, so it can be checked out again."""
    from dvc.fs import localfs
    from dvc_data.hashfile.hash import file_md5

    repo.cache.local.add(str(file), localfs, file_md5(str(file)))


def _copy_verified(source: Path, target: Path, md5: str) -> None:
    """Copies source to target through a temporary file, replacing target only when the copy's
    md5 is `md5`: a reader never sees half a file or the wrong bytes."""
    from dvc_data.hashfile.hash import file_md5

    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
    os.close(handle)
    try:
        shutil.copyfile(source, tmp)
        actual = file_md5(tmp)
        if actual != md5:
            raise DataError(
                f"{source}: the DVC cache copy of data version {md5} has md5 {actual} "
                "(corrupted); delete that file and pull again"
            )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _absolute(root: Path, path: Path | str) -> Path:
    path = Path(path)
    return path if path.is_absolute() else root / path


def _hash_info(md5: str):
    from dvc_data.hashfile.hash_info import HashInfo

    return HashInfo(HASH_NAME, md5)


@contextlib.contextmanager
def _open_repo(root: Path) -> Iterator[Repo]:
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        repo = Repo(str(root))
    except NotDvcRepoError:
        raise DataError(
            f"{root}: not a DVC repository (no .dvc/); run `dvc init` there first"
        ) from None
    with repo:
        yield repo


@contextlib.contextmanager
def _quiet_dvc() -> Iterator[None]:
    """Silences DVC's own console output (progress bars, its missing-file warning): the
    callers report what happened, and raise DataError for a missing object."""
    logger = logging.getLogger("dvc")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
