#!/usr/bin/env bash
# Builds kube-apiserver (v1.20.2) from Debian's `kubernetes` source package into a cache directory
# outside the repo, once; later runs print the cached binary's path at once. No registry ships a
# kube-apiserver binary: Debian ships its source, and Debian's Go 1.19 builds it offline from the
# vendored modules. The tests in tests/kube/ run it against Debian's etcd-server.
#
# Prints the binary's path on stdout; progress goes to stderr. Exit codes: 0 built (or cached),
# 3 impossible here (no apt-get, not root and no sudo, or the packages cannot be fetched), 1 the build failed.
# Concurrent runs (CI starts one early in the background; `make unit` asks again) share one build: flock.
set -euo pipefail
CACHE="${RECONCILER_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/reconciler/kube}"
BIN="$CACHE/bin/kube-apiserver"
if [[ -x "$BIN" ]]; then echo "$BIN"; exit 0; fi
mkdir -p "$CACHE/bin"
exec 9>"$CACHE/build.lock"
flock 9
if [[ -x "$BIN" ]]; then echo "$BIN"; exit 0; fi  # another run built it while this one waited

impossible() { echo "build-kube-apiserver: $*" >&2; exit 3; }
command -v apt-get >/dev/null || impossible "no apt-get on this machine (Debian's kubernetes source package is needed)"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null && sudo -n true 2>/dev/null || impossible "not root and no password-less sudo for apt-get"
  SUDO="sudo -n"
fi
export DEBIAN_FRONTEND=noninteractive
# The toolchain and the fix: Go 1.19, rsync (kube's build scripts), etcd to run against, dpkg-source, and
# reflect2 1.0.2 (the vendored 1.0.1 panics under Go >= 1.18).
PACKAGES=(golang-1.19-go rsync etcd-server dpkg-dev golang-github-modern-go-reflect2-dev make)
installed=$(dpkg-query -W -f='${Status}\n' "${PACKAGES[@]}" 2>/dev/null | grep -c "install ok installed" || true)
if [[ $installed -eq ${#PACKAGES[@]} ]]; then
  echo "build-kube-apiserver: packages already installed" >&2
else
  # A clean machine may have no package lists yet: update once, then install.
  $SUDO apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >&2 \
    || { $SUDO apt-get update -q >&2 && $SUDO apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >&2; } \
    || impossible "apt-get could not install ${PACKAGES[*]}"
fi

# A deb-src entry with the machine's own Debian URIs, in a private directory: the machine's apt sources
# list binary packages only, and no host name is written into the repo.
APT="$CACHE/apt"
mkdir -p "$APT/lists/partial" "$CACHE/src"
uris=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[[ -n "$uris" ]] || uris=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
[[ -n "$uris" ]] || impossible "no Debian URI in the machine's apt sources"
suite=$(. /etc/os-release; echo "$VERSION_CODENAME")
printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
  "$uris" "$suite" > "$APT/src.sources"
APTO=(-o Dir::Etc::SourceParts="$APT" -o Dir::Etc::SourceList=/dev/null -o Dir::State::Lists="$APT/lists")
apt-get "${APTO[@]}" update -q >&2 || impossible "apt-get could not read the source package index"
cd "$CACHE/src"
ls kubernetes_*.dsc >/dev/null 2>&1 || apt-get "${APTO[@]}" source --download-only kubernetes >&2 \
  || impossible "apt-get could not download the kubernetes source package"
dsc=$(ls kubernetes_*.dsc | head -1)
rm -rf tree
dpkg-source -x "$dsc" tree >&2
cd tree
r2=vendor/github.com/modern-go/reflect2
rm -rf "$r2"; mkdir -p "$r2"; cp -r /usr/share/gocode/src/github.com/modern-go/reflect2/. "$r2/"
# `go build` alone refuses ("updates to go.mod needed"): kube's own make, offline, from vendor/.
export PATH=/usr/lib/go-1.19/bin:$PATH GOFLAGS=-mod=vendor GOPROXY=off CGO_ENABLED=0 GOCACHE="$CACHE/gocache"
make WHAT=cmd/kube-apiserver >&2
cp _output/bin/kube-apiserver "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
cd "$CACHE" && rm -rf src/tree gocache  # ~1.5 GiB of sources and objects; the binary is all that is reused
echo "$BIN"
