"""Reading config out of commits with a BlobCache: what a commit did not change is not asked of git again."""

from __future__ import annotations

from pathlib import Path

import git as gitpython
import pytest
from gitrepo import GitRemote

from reconciler.sources.git.tree import BlobCache, config_tree, read_config_tree

pytestmark = pytest.mark.git


def _tree(remote: GitRemote) -> gitpython.Tree:
    """The config directory of the remote's head (the repo's helper processes end with the test's)."""
    with gitpython.Repo(remote.bare) as repo:
        tree = config_tree(repo.commit(remote.head()), "mesh")
    assert tree is not None
    return tree


def test_a_directory_a_commit_left_alone_is_not_listed_again_and_its_listing_outlives_a_change_above_it(
    tmp_path: Path,
) -> None:
    remote = GitRemote.create(tmp_path)
    remote.commit({"mesh/top.yaml": "kind: A\n", "mesh/deep/one.yaml": "kind: B\n"}, "two files")
    cache = BlobCache()
    first = dict(cache.walk(_tree(remote)))
    remote.commit({"mesh/top.yaml": "kind: A2\n"}, "top changed")
    second = dict(cache.walk(_tree(remote)))
    remote.commit({"mesh/top.yaml": "kind: A3\n"}, "top changed again")
    third = dict(cache.walk(_tree(remote)))

    assert sorted(first) == sorted(second) == sorted(third) == ["deep/one.yaml", "top.yaml"]
    assert second["deep/one.yaml"] is first["deep/one.yaml"]  # the same object: the directory was not listed again
    assert third["deep/one.yaml"] is first["deep/one.yaml"]
    assert second["top.yaml"].hexsha != first["top.yaml"].hexsha


def test_files_read_through_a_cache_are_the_files_read_without_one(tmp_path: Path) -> None:
    remote = GitRemote.create(tmp_path)
    remote.commit({"mesh/a.yaml": "kind: A\n", "mesh/sub/b.yaml": "kind: B\n", "mesh/.hidden/c.yaml": "x\n"}, "one")
    cache = BlobCache()
    read_config_tree(_tree(remote), cache=cache)
    remote.commit({"mesh/sub/b.yaml": "kind: B2\n", "mesh/sub/d.yaml": "kind: D\n", "mesh/a.yaml": None}, "two")

    cached = read_config_tree(_tree(remote), cache=cache)

    assert cached == read_config_tree(_tree(remote))
    assert set(cached.files) == {"sub/b.yaml", "sub/d.yaml"}
