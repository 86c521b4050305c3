#!/usr/bin/env bash
# The demo: records a few simulated sessions into ./data (or $TOSCA_DATA_DIR) and shows
# what is there. Later steps (backup, verify, restore) join it as they land.
source "$(dirname "$0")/common.sh"
DATA=${TOSCA_DATA_DIR:-./data}
swift build
BIN=$(swift build --show-bin-path)
echo
echo "== tosca-sim: recording 3 simulated sessions into $DATA"
"$BIN/tosca-sim" --data-dir "$DATA" --sessions 3 --duration 3 --media-mib 2
echo
echo "== tosca-maint inspect --data-dir $DATA"
"$BIN/tosca-maint" inspect --data-dir "$DATA"
echo
echo "== tosca-maint backup --data-dir $DATA   (hot backup, verified, then published)"
"$BIN/tosca-maint" backup --data-dir "$DATA"
echo
echo "== tosca-maint verify --latest --live"
"$BIN/tosca-maint" verify --data-dir "$DATA" --latest --live
echo
echo "== tosca-maint restore --drill   (restores the newest backup into a scratch folder and checks it)"
"$BIN/tosca-maint" restore --drill --data-dir "$DATA"
echo
echo "== tosca-maint restore --latest --dry-run   (what a restore would do; stop the recorder first for a real one)"
"$BIN/tosca-maint" restore --latest --dry-run --data-dir "$DATA"
echo
echo "== tosca-maint bundle   (each finished session folder sealed into one verified bundle)"
if "$BIN/tosca-maint" bundle --data-dir "$DATA"; then
  "$BIN/tosca-maint" bundle list --data-dir "$DATA"
  SID=$("$BIN/tosca-maint" bundle list --json --data-dir "$DATA" | sed -n 's/.*"session" : \([0-9]*\).*/\1/p' | tail -n 1)
  OUT=$(mktemp -d)/session-$SID
  echo "== tosca-maint bundle extract --session $SID --to $OUT   (every file's SHA-256 checked)"
  "$BIN/tosca-maint" bundle extract --session "$SID" --to "$OUT" --data-dir "$DATA"
  rm -rf "$(dirname "$OUT")"
else
  echo "(no bundles: see the message above)"
fi
echo
echo "== tosca-maint list"
"$BIN/tosca-maint" list --data-dir "$DATA"
echo
echo "== tosca-maint status"
"$BIN/tosca-maint" status --data-dir "$DATA"
echo
echo "== the stock sqlite3 CLI reads the same file (plaintext database)"
sqlite3 -readonly "$DATA/tosca.db" "SELECT session_id, status, start_time, session_folder_path FROM sessions ORDER BY session_id DESC LIMIT 3;" 2>/dev/null \
  || echo "(encrypted database: sqlite3 cannot read it)"
