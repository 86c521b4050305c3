# Sourced by the scripts: finds the Swift toolchain and installs the system packages.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v swift >/dev/null 2>&1; then
  for d in /opt/swift/usr/bin /usr/share/swift/usr/bin; do
    [[ -x $d/swift ]] && PATH="$d:$PATH"
  done
  export PATH
fi
command -v swift >/dev/null 2>&1 || { echo "Error: no Swift 6 toolchain on PATH (https://www.swift.org/install/linux/)" >&2; exit 78; }
bash scripts/install-deps.sh
