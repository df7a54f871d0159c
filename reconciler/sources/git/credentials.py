"""How git authenticates to a private remote, without a secret in argv, the clone's config or a log.

Two ways, both handed to git through its *environment* (never written to ``state/repo/config``,
never on a command line ``ps`` shows):

- HTTPS: a token from a file (read by git on every fetch, so a rotated Secret is picked up
  without a restart) or from an environment variable. git asks a credential helper that
  this module defines through ``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``: a shell function
  scoped to the remote's ``scheme://host``, so a redirect to another host gets nothing. The
  helper list is reset first, so no helper from the user's git config (``store``) saves it.
- SSH: a deploy key and a known_hosts file through ``GIT_SSH_COMMAND``, with
  ``StrictHostKeyChecking=yes``: an unknown or changed host key fails the fetch (``AuthError``).

A URL with credentials in it (``https://user:token@host/...``) still works: they are taken
out of the URL git is given (:func:`split_credentials`) and passed the same way, and the
daemon warns to move them to a file. Everything shown keeps going through ``redact_url``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["DEFAULT_TOKEN_USERNAME", "NO_CREDENTIALS", "GitCredentials", "git_environment", "split_credentials"]

#: The user name sent with a token: GitHub's for app and personal tokens; GitLab, Gitea and Bitbucket
#: accept any non-empty name with a token (``--git-username`` changes it, e.g. ``oauth2``).
DEFAULT_TOKEN_USERNAME = "x-access-token"

# The helper reads what to answer from these variables of git's environment: a file's path, or
# (a token from the environment or the URL) the value itself, as the daemon's own environment had it.
_USERNAME_VAR = "RECONCILER_GIT_USERNAME"
_TOKEN_FILE_VAR = "RECONCILER_GIT_TOKEN_FILE"
_PASSWORD_VAR = "RECONCILER_GIT_PASSWORD"
# ``!`` runs it with the shell; builtins only besides cat, whose argv is the file's path. It drains the
# request git writes, and answers ``get`` only (``store`` and ``erase`` are no-ops).
_HELPER = (
    '!f() { while read -r _; do :; done; test "$1" = get || return 0; '
    f'if [ -n "${_TOKEN_FILE_VAR}" ]; then p=$(cat -- "${_TOKEN_FILE_VAR}") || return 1; '
    f'else p="${_PASSWORD_VAR}"; fi; '
    f'printf \'username=%s\\npassword=%s\\n\' "${_USERNAME_VAR}" "$p"; }}; f'
)


@dataclass(frozen=True, slots=True, kw_only=True)
class GitCredentials:
    """What git presents to the remote. Empty (the default): git's own configuration decides."""

    #: A file holding an HTTPS token (surrounding whitespace ignored), read on every fetch.
    token_file: Path | None = None
    #: An HTTPS token itself (from an environment variable; never from a flag).
    token: str | None = None
    #: The user name sent with the token.
    username: str = DEFAULT_TOKEN_USERNAME
    #: An SSH private key (a deploy key); only this key is offered.
    ssh_key: Path | None = None
    #: The known_hosts file the SSH host key must be in (``None``: ssh's default, ``~/.ssh/known_hosts``).
    known_hosts: Path | None = None

    @property
    def has_token(self) -> bool:
        return self.token_file is not None or bool(self.token)


#: Nothing configured: git's own configuration (and a URL's credentials) decide.
NO_CREDENTIALS = GitCredentials()


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``url`` without the user and password of an http(s) URL, and those two (percent-decoded), if any.

    ``https://TOKEN@host/r.git`` (a token as the user name, GitHub's documented form) comes back as
    user ``TOKEN`` and password ``""``. Other URLs (ssh, scp-like, paths) come back unchanged.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in {"http", "https"} or "@" not in parts.netloc:
        return url, None, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=hostport)), unquote(user), unquote(password)


def git_environment(
    url: str, credentials: GitCredentials, *, url_user: str | None = None, url_password: str | None = None
) -> dict[str, str]:
    """The variables git runs with to authenticate to ``url`` (credential-free) as ``credentials`` say.

    ``url_user``/``url_password`` are the credentials :func:`split_credentials` took out of the
    URL; a token file or token wins over them. Empty when there is nothing to present.
    """
    env: dict[str, str] = {}
    if credentials.ssh_key is not None or credentials.known_hosts is not None:
        env["GIT_SSH_COMMAND"] = _ssh_command(credentials)
    parts = urlsplit(url)
    if parts.scheme.lower() not in {"http", "https"}:
        return env
    if credentials.token_file is not None:
        env[_TOKEN_FILE_VAR] = str(credentials.token_file)
        username = credentials.username
    elif credentials.token:
        env[_PASSWORD_VAR] = credentials.token
        username = credentials.username
    elif url_user is not None:
        env[_PASSWORD_VAR] = url_password or ""
        username = url_user
    else:
        return env
    origin = f"{parts.scheme.lower()}://{parts.netloc}"
    env.update(
        {
            _USERNAME_VAR: username,
            "GIT_CONFIG_COUNT": "2",
            # An empty value resets the helper list: no helper of the user's config sees (or stores) the token.
            "GIT_CONFIG_KEY_0": "credential.helper",
            "GIT_CONFIG_VALUE_0": "",
            "GIT_CONFIG_KEY_1": f"credential.{origin}.helper",
            "GIT_CONFIG_VALUE_1": _HELPER,
        }
    )
    return env


def _ssh_command(credentials: GitCredentials) -> str:
    # BatchMode: no passphrase or host-key prompt a daemon could hang on.
    options = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
    if credentials.ssh_key is not None:
        options += ["-i", str(credentials.ssh_key), "-o", "IdentitiesOnly=yes"]
    if credentials.known_hosts is not None:
        options += ["-o", f"UserKnownHostsFile={credentials.known_hosts}"]
    return shlex.join(options)
