#!/usr/bin/env bash
# Installs what tosca-maint needs to build, run and test on Debian 12 (bookworm).
# Idempotent: a second run changes nothing and returns quickly.
#
#   SQLCipher 4.6 (libsqlcipher-dev, sqlcipher) from bookworm-backports (ARCHITECTURE D1:
#   the main suite's 3.4.1 silently writes plaintext backups of encrypted databases);
#   libarchive-dev, libsystemd-dev, sqlite3 (test oracle), zstd, libarchive-tools (bsdtar,
#   benchmark baseline) from the main suite; make (make install), systemd (systemd-analyze,
#   journalctl: the unit and catalog tests), man-db (the man-page test), age (the oracle
#   that reads and writes encrypted session bundles in the tests), python3 (its tarfile
#   module builds the hostile archives of the bundle tests), restic (the export engine,
#   D19) and rclone (an append-only restic server on loopback for the export tests).
set -euo pipefail

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

need_pkgs=(libarchive-dev libsystemd-dev sqlite3 zstd libarchive-tools pkg-config make systemd man-db age python3 restic rclone)
bpo_pkgs=(libsqlcipher-dev sqlcipher)

have_all() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || return 1
  done
}

sqlcipher_ok() {
  # libsqlcipher-dev must be the backports 4.x build, never 3.4.1 from the main suite.
  local v
  v=$(dpkg-query -W -f='${Version}' libsqlcipher-dev 2>/dev/null || true)
  [[ -n $v ]] && dpkg --compare-versions "$v" ge 4.5
}

if have_all "${need_pkgs[@]}" "${bpo_pkgs[@]}" && sqlcipher_ok; then
  exit 0
fi

. /etc/os-release
codename=${VERSION_CODENAME:-}
if [[ $codename == bookworm ]]; then
  # Enable bookworm-backports from this machine's own Debian mirror entry.
  if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/ ; then
    mirror=""
    if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
      mirror=$(awk '
        /^URIs:/ {u=$2}
        /^Suites:/ { for (i=2;i<=NF;i++) if ($i=="bookworm") found=u }
        /^$/ {u=""}
        END { print found }' /etc/apt/sources.list.d/debian.sources)
    fi
    if [[ -z $mirror && -f /etc/apt/sources.list ]]; then
      mirror=$(awk '$1=="deb" && $3=="bookworm" {print $2; exit}' /etc/apt/sources.list)
    fi
    mirror=${mirror:-http://deb.debian.org/debian}
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$mirror" | $SUDO tee /etc/apt/sources.list.d/tosca-backports.sources >/dev/null
  fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports "${bpo_pkgs[@]}" >/dev/null
else
  # Debian 13 and later ship SQLCipher 4.6 in the main suite.
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" "${bpo_pkgs[@]}" >/dev/null
fi

if ! sqlcipher_ok; then
  echo "Error: libsqlcipher-dev 4.5 or later is required (found: $(dpkg-query -W -f='${Version}' libsqlcipher-dev 2>/dev/null || echo none))" >&2
  exit 78
fi
