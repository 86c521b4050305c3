#!/usr/bin/env bash
# The defects of the field trials (issue 11), each reproduced against one build, one line
# each: ./scripts/field-defects.sh .build/debug (or an older build's folder, to compare).
# Needs sqlite3, sqlcipher, prlimit, timeout. Every line of a fixed build reads as the
# tests expect; the tests in Tests/CLITests are the pass/fail record, this is the side by
# side view.
B=$(cd "${1:?usage: field-defects.sh BUILD_FOLDER}" && pwd); M=$B/tosca-maint; S=$B/tosca-sim
FIX="$(cd "$(dirname "$0")/.." && pwd)/Tests/Fixtures/tosca-v0.9.12-schema.sql"
set +e
W=$(mktemp -d); cd "$W"
sim() { "$S" --data-dir "$1" --sessions "${2:-1}" --duration 0.2 --sample-rate 200 --event-rate 100 --seed 3 "${@:3}" >/dev/null 2>&1; }
key() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$1"; chmod 0400 "$1"; }
out() { printf '%-4s %-62s %s\n' "$1" "$2" "$3"; }
# crash: one-character --to, tosca-sim e/f
sim d1; "$M" backup --data-dir d1 >/dev/null 2>&1
mkdir c; (cd c && "$M" restore --latest --to o --yes --data-dir ../d1 >/dev/null 2>&1); out X1 "restore --latest --to o --yes (exit)" $?
(cd c && "$S" --data-dir e/f --sessions 1 --duration 0.2 >/dev/null 2>&1); out X2 "tosca-sim --data-dir e/f (exit)" $?
# 2 symlinked backups/: prune deletes outside
sim d2; "$M" backup --data-dir d2 >/dev/null 2>&1; mv d2/backups elsewhere; ln -s "$W/elsewhere" d2/backups
"$M" prune --keep-daily 1 --keep-weekly 0 --keep-monthly 0 --data-dir d2 >/dev/null 2>&1; r=$?
out 2 "prune with symlinked backups/ (exit; .db files left outside)" "$r; $(ls elsewhere | grep -c '\.db$')"
# 3 lost copy
sim d3; "$M" backup --data-dir d3 >/dev/null 2>&1; "$M" restore --drill --data-dir d3 >/dev/null 2>&1; sim d3
c=$("$M" backup --data-dir d3 2>/dev/null); rm -f "$c"
"$M" status --data-dir d3 >/dev/null 2>&1; out 3 "status after a published .db was deleted (exit)" $?
"$M" verify --all --live --data-dir d3 >/dev/null 2>&1; out 3 "verify --all --live after that (exit)" $?
# 4 mistyped data dir
"$M" verify --all --data-dir typo >/dev/null 2>&1; r=$?; out 4 "verify --all --data-dir typo (exit; folder created?)" "$r; $( [ -e typo ] && echo yes || echo no)"
# 5 FIFO key
mkfifo fifo; timeout 10 "$M" encrypt --key-file fifo --rehearse --data-dir d1 >/dev/null 2>&1; out 5 "encrypt --key-file FIFO (exit; 124 = hung, killed after 10 s)" $?
# 6 unreadable manifest
sim d6; c=$("$M" backup --data-dir d6 2>/dev/null); echo '{ not json' > "$c.manifest.json"
"$M" status --data-dir d6 >/dev/null 2>&1; out 6 "status with an unreadable manifest (exit)" $?
# 7 encrypt on a full disk
# (a compacted database of some hundreds of pages, the file-size limit at its exact size:
# the pre-encryption copy fits, the encrypted export, 80 bytes a page longer, does not)
sim d7 2; sqlite3 d7/tosca.db "INSERT INTO sessions (subject_id, tech_id, start_time, status, created_date) SELECT subject_id, tech_id, start_time, 'paused', created_date FROM sessions LIMIT 1; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<5000) INSERT INTO treatment_events (session_id, timestamp, time_offset_ms, event_type, event_details) SELECT (SELECT max(session_id) FROM sessions), '2026-01-01 00:00:00.000000', i, 'power_reading', hex(randomblob(64)) FROM n; PRAGMA wal_checkpoint(TRUNCATE); VACUUM;" >/dev/null; key k7
prlimit --fsize=$(stat -c %s d7/tosca.db) "$M" encrypt --key-file k7 --yes --data-dir d7 >/dev/null 2>&1; out 7 "encrypt with the disk full for the export (exit)" $?
# 8 killed rehearsal leftover
sim d8; mkdir -p d8/backups/.rehearse-999999; cp d8/tosca.db d8/backups/.rehearse-999999/plain.db
"$M" backup --data-dir d8 >/dev/null 2>&1; out 8 "plaintext .rehearse-<pid>/ left after the next backup" "$( [ -e d8/backups/.rehearse-999999 ] && echo yes || echo no)"
# 9 status --data-dir '', list on a file, restore --to without a terminal
"$M" status --data-dir '' >/dev/null 2>&1; out 9 "status --data-dir '' (exit)" $?
touch afile; "$M" list --data-dir afile >/dev/null 2>&1; out 9 "list --data-dir <a file> (exit)" $?
"$M" restore --latest --to "$W/inspect.db" --data-dir d1 </dev/null >/dev/null 2>&1; out 9 "restore --latest --to F without a terminal, no --yes (exit)" $?
# 10/11 planned encrypt on a green device; names
sim d10; "$M" backup --data-dir d10 >/dev/null 2>&1; "$M" restore --drill --data-dir d10 >/dev/null 2>&1; key k10
before=$(ls d10/backups | grep '\.db$' | tr '\n' ' ')
"$M" encrypt --key-file k10 --yes --data-dir d10 >/dev/null 2>&1
"$M" status --key-file k10 --data-dir d10 >/dev/null 2>&1; out 10 "status right after a planned encrypt (exit)" $?
after=$(ls d10/backups | grep '\.db$' | tr '\n' ' ')
out 11 "copy names before -> after encrypt" "$before-> $after"
# 12 restore: journal mode, file mode, user
sim d12; "$M" backup --data-dir d12 >/dev/null 2>&1; chmod 0640 d12/tosca.db
env -i PATH=/usr/bin:/bin "$M" restore --latest --yes --data-dir d12 >/dev/null 2>&1
out 12 "after an in-place restore: journal_mode, mode, entry's user" "$(sqlite3 d12/tosca.db 'PRAGMA journal_mode;'), $(stat -c %a d12/tosca.db), $(sqlite3 d12/tosca.db "SELECT description FROM safety_log ORDER BY seq DESC LIMIT 1;" | sed 's/.* by //')"
# 13 refused migrate publishes a copy
mkdir d13; { cat "$FIX"; echo "INSERT INTO tech_users VALUES (1, 'a', 'A', 'admin', '2025-03-01 09:00:00.000000', NULL, 1, NULL); INSERT INTO subjects VALUES (1, 'P-001', NULL, NULL, '2025-04-01 10:00:00.000000', 1, NULL, NULL, 1); INSERT INTO sessions VALUES (1, 1, 0, NULL, '2025-06-01 10:00:00.000000', NULL, NULL, 'aborted', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '2025-06-01 10:00:00.000000');"; } | sqlite3 d13/tosca.db
for i in 1 2; do "$M" migrate up --yes --data-dir d13 >/dev/null 2>&1; done
out 13 "two refused migrate up (orphans): pre-migration copies" "$(ls d13/backups 2>/dev/null | grep -c '_pre-migration\.db$')"
# 1 plaintext copies after an interrupted encrypt
sim d1b; "$M" backup --data-dir d1b >/dev/null 2>&1; "$M" restore --drill --data-dir d1b >/dev/null 2>&1; key k1b
uv=$(sqlite3 d1b/tosca.db 'PRAGMA user_version;'); ai=$(sqlite3 d1b/tosca.db 'PRAGMA application_id;')
printf "ATTACH DATABASE '%s' AS enc KEY \"x'%s'\";\nSELECT sqlcipher_export('enc');\nPRAGMA enc.user_version=%s;\nPRAGMA enc.application_id=%s;\nDETACH DATABASE enc;\n" "$W/enc.db" "$(cat k1b)" "$uv" "$ai" | sqlcipher -batch d1b/tosca.db >/dev/null
rm -f d1b/tosca.db d1b/tosca.db-wal d1b/tosca.db-shm; mv enc.db d1b/tosca.db
"$M" status --key-file k1b --data-dir d1b >/dev/null 2>&1; out 1 "status with plaintext copies on an encrypted device (exit)" $?
# unsealed: TOSCA's insert after a migration
sim du; sqlite3 du/tosca.db "INSERT INTO safety_log (timestamp, event_type, severity, description) VALUES ('2025-06-01 10:13:00', 'note', 'info', 'old app');" >/dev/null 2>&1
out U "safety event inserted without chain columns (sqlite3 exit)" $?
# seal: a treatment event deleted past dropped-and-restored triggers
sim ds; "$M" backup --data-dir ds >/dev/null 2>&1
t=$(sqlite3 ds/tosca.db "SELECT group_concat(sql || ';', ' ') FROM sqlite_master WHERE type='trigger' AND tbl_name='treatment_events';")
d=$(sqlite3 ds/tosca.db "SELECT group_concat('DROP TRIGGER ' || name || ';', ' ') FROM sqlite_master WHERE type='trigger' AND tbl_name='treatment_events';")
sqlite3 ds/tosca.db "$d DELETE FROM treatment_events WHERE event_id = (SELECT max(event_id) FROM treatment_events); $t" >/dev/null
"$M" verify --live --data-dir ds >/dev/null 2>&1; out S "verify --live after a sealed session's event was deleted (exit)" $?
cd /; rm -rf "$W"
