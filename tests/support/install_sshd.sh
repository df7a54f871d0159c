#!/usr/bin/env bash
# Installs Debian's openssh-server for the SSH deploy-key tests (tests/sources/test_git_ssh.py), once.
# The tests start their own sshd on 127.0.0.1 with their own host key and config: the system's ssh
# service is never started (a policy-rc.d refuses it during the install when the machine has none).
#
# Prints sshd's path on stdout; progress goes to stderr. Exit codes: 0 installed (or already there),
# 3 impossible here (no apt-get, not root and no password-less sudo, or the package cannot be fetched).
set -euo pipefail
for candidate in /usr/sbin/sshd "$(command -v sshd || true)"; do
  if [[ -n "$candidate" && -x "$candidate" ]]; then echo "$candidate"; exit 0; fi
done

impossible() { echo "install-sshd: $*" >&2; exit 3; }
command -v apt-get >/dev/null || impossible "no apt-get on this machine (Debian's openssh-server is needed)"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null && sudo -n true 2>/dev/null || impossible "not root and no password-less sudo for apt-get"
  SUDO="sudo -n"
fi
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/reconciler"
mkdir -p "$CACHE"
exec 9>"$CACHE/sshd-install.lock"
flock 9  # parallel test workers share one install
if [[ -x /usr/sbin/sshd ]]; then echo /usr/sbin/sshd; exit 0; fi

POLICY=/usr/sbin/policy-rc.d
if [[ ! -e $POLICY ]]; then
  # Debian's way to keep a package's service from starting: 101 "action forbidden". Removed afterwards.
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod 755 "$POLICY"
  trap '$SUDO rm -f "$POLICY"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q --no-install-recommends openssh-server >&2 \
  || { $SUDO apt-get update -q >&2 && $SUDO apt-get install -y -q --no-install-recommends openssh-server >&2; } \
  || impossible "apt-get could not install openssh-server"
[[ -x /usr/sbin/sshd ]] || impossible "openssh-server installed no /usr/sbin/sshd"
echo /usr/sbin/sshd
