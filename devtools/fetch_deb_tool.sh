#!/bin/sh
# Unpack one program of a Debian package into ./var/tools/bin, for tests, without installing the package:
# installing `prometheus` or `nginx` would also enable and start their services (Debian starts a package's unit
# on install), a server on all interfaces that `make test` must not leave behind.
# Usage: fetch_deb_tool.sh PACKAGE PROGRAM. Idempotent and quiet: does nothing when PROGRAM is on PATH or already
# unpacked, or when it cannot fetch (no apt-get/dpkg-deb, no package lists); the tests needing it then skip.
set -eu

package=$1
program=$2
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/var/tools/bin"

if command -v "$program" >/dev/null 2>&1 || [ -x "$dest/$program" ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
    echo "fetch_deb_tool: $program missing and no apt-get/dpkg-deb to fetch $package (its tests will skip)" >&2
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"  # apt-get download runs as _apt where it can, and must write here

download() { (cd "$work" && apt-get download -qq -o DPkg::Lock::Timeout=300 "$package" >/dev/null 2>&1); }
if ! download; then
    # No package lists yet (a fresh container): refresh them where we may, then try once more.
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq -o DPkg::Lock::Timeout=300 >/dev/null 2>&1 || true
    fi
    if ! download; then
        echo "fetch_deb_tool: could not download $package (its tests will skip)" >&2
        exit 0
    fi
fi
dpkg-deb -x "$work"/*.deb "$work/tree"
found=$(find "$work/tree" -type f -path "*bin/$program" | head -n 1)
if [ -z "$found" ]; then
    echo "fetch_deb_tool: $package has no $program (its tests will skip)" >&2
    exit 0
fi
mkdir -p "$dest"
cp "$found" "$dest/.$program.tmp"
chmod 0755 "$dest/.$program.tmp"
mv "$dest/.$program.tmp" "$dest/$program"
