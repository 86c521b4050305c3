#!/usr/bin/env bash
# After-session protection on a large database, measured side by side (release build):
#   - `tosca-maint protect` for one session (bundle, session backup, export) against the
#     same work by hand: bsdtar --zstd of the session folder + sha256sum, sqlite3 .backup +
#     integrity_check + sha256sum of the copy, restic backup of both into a repository
#     that holds the same first export + restic check of one subset;
#   - the bytes each repository grows by, as a share of the database's size;
#   - the recorder's p99 commit latency while protect runs, against idle (pooled over
#     --pairs windows each, tosca-sim --latency-report).
# Prints ratios, never a time alone as the result.
#
#   ./scripts/bench-protect.sh --data FOLDER [--work-dir DIR] [--session-seconds 1200] [--media-mib 64] [--pairs 3]
#
# FOLDER: a data folder holding a large simulated-origin tosca.db, e.g. the one
# `./scripts/bench.sh backup --size-mib 1024 --work-dir W` builds in W/plain. It is copied,
# never changed. Run `make` first (release build).
source "$(dirname "$0")/common.sh"
data_src="" work=/var/tmp/tosca-bench-protect secs=1200 media=64 pairs=3
while (($#)); do
  case $1 in
    --data) data_src=$2; shift 2 ;;
    --work-dir) work=$2; shift 2 ;;
    --session-seconds) secs=$2; shift 2 ;;
    --media-mib) media=$2; shift 2 ;;
    --pairs) pairs=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "Error: unknown argument $1" >&2; echo "Try: $0 --help" >&2; exit 64 ;;
  esac
done
[[ -n $data_src && -f $data_src/tosca.db ]] || { echo "Error: --data FOLDER must hold a tosca.db" >&2; exit 64; }
bin=.build/release
for p in tosca-maint tosca-sim; do [[ -x $bin/$p ]] || { echo "Error: no release build of $p" >&2; echo "Try: make" >&2; exit 66; }; done
for t in restic bsdtar sqlite3 sha256sum python3; do command -v "$t" >/dev/null || { echo "Error: $t is needed" >&2; exit 78; }; done
maint=$bin/tosca-maint sim=$bin/tosca-sim

rm -rf "$work"; mkdir -p "$work/hand"
data=$work/data
mkdir -p "$data"
cp -a "$data_src/tosca.db" "$data/"
[[ -d $data_src/sessions ]] && cp -a "$data_src/sessions" "$data/"
# The repositories: on another filesystem when /dev/shm is one (an off-device copy), else allowed for the benchmark.
if [[ $(stat -c %d /dev/shm) != $(stat -c %d "$work") ]]; then repos=/dev/shm/tosca-bench-protect-$$; same=(); else repos=$work/repos; same=(--allow-same-device); fi
rm -rf "$repos"; mkdir -p "$repos"
trap 'rm -rf "$repos"' EXIT
pass=$work/pass; echo "bench password" > "$pass"; chmod 0600 "$pass"
repo=(--repo "$repos/ours" --password-file "$pass" --cache-dir "$work/cache" "${same[@]}")
hand_restic() { restic -r "$repos/hand" --password-file "$pass" --cache-dir "$work/cache-hand" -q "$@"; }
db_bytes=$(stat -c %s "$data/tosca.db")
say() { printf '%s\n' "$*" >&2; }

say "set-up: the first backup, bundles and export of $(( db_bytes / 1048576 )) MiB (both repositories)"
$maint export init --data-dir "$data" "${repo[@]}" >/dev/null
$maint backup --kind daily --data-dir "$data" >/dev/null
$maint bundle --data-dir "$data" >/dev/null
$maint export --data-dir "$data" "${repo[@]}" >/dev/null
rm -rf "$data/spool"   # the set-up's own sessions are not the measured one
hand_restic init
first=$(ls "$data"/backups/*.db | tail -1)
hand_restic backup "$first" "$data/bundles" >/dev/null

say "recording one session of $secs s (tosca-sim, $media MiB of media)"
$sim --data-dir "$data" --sessions 1 --duration "$secs" --media-mib "$media" --seed 7 >/dev/null
folder=$(sqlite3 "$data/tosca.db" "SELECT session_folder_path FROM sessions ORDER BY session_id DESC LIMIT 1")
session_bytes=$(du -sb "$data/$folder" | cut -f1)
events=$(sqlite3 "$data/tosca.db" "SELECT count(*) FROM treatment_events WHERE session_id = (SELECT max(session_id) FROM sessions)")

now() { date +%s.%N; }
size() { du -sb "$1" | cut -f1; }
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
b0=$(size "$repos/ours"); t0=$(now)
$maint protect --data-dir "$data" "${repo[@]}" >/dev/null
t1=$(now); b1=$(size "$repos/ours")
[[ -z $(ls -A "$data/spool/ended") ]] || { echo "Error: protect left markers" >&2; exit 70; }
sid=$(sqlite3 "$data/tosca.db" "SELECT max(session_id) FROM sessions")
bundle_bytes=$(for f in "$data"/bundles/session_"$sid"_*; do [[ $f == *.manifest.json ]] || stat -c %s "$f"; done | head -1)
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
h0=$(size "$repos/hand"); t2=$(now)
bsdtar --zstd -cf "$work/hand/session.tar.zst" -C "$data" "$folder"
sha256sum "$work/hand/session.tar.zst" >/dev/null
sqlite3 "$data/tosca.db" ".backup '$work/hand/copy.db'"
[[ $(sqlite3 "$work/hand/copy.db" "PRAGMA integrity_check") == ok ]]
sha256sum "$work/hand/copy.db" >/dev/null
hand_restic backup "$work/hand/copy.db" "$work/hand/session.tar.zst" >/dev/null
hand_restic check --read-data-subset=1/12 >/dev/null
t3=$(now); h1=$(size "$repos/hand")

say "latency: $pairs pairs of windows, idle then with protect running (nice 19, idle I/O, as the unit)"
for i in $(seq "$pairs"); do
  $sim --data-dir "$data" --until-signal --sample-rate 1000 --event-rate 50 --seed $((40 + i)) --latency-report "$work/idle-$i.json" >/dev/null &
  pid=$!; sleep 20; kill -TERM $pid; wait $pid
  # The idle window's session left its marker: protect has work while the next window records.
  $sim --data-dir "$data" --until-signal --sample-rate 1000 --event-rate 50 --seed $((50 + i)) --latency-report "$work/busy-$i.json" >/dev/null &
  pid=$!; sleep 2
  nice -n 19 ionice -c 3 $maint protect --data-dir "$data" "${repo[@]}" >/dev/null || say "protect exited $? in window $i"
  sleep 2; kill -TERM $pid; wait $pid
done

python3 - "$work" "$pairs" "$t0" "$t1" "$t2" "$t3" "$b0" "$b1" "$h0" "$h1" "$db_bytes" "$session_bytes" "$events" "$bundle_bytes" <<'EOF'
import json, sys
work, pairs = sys.argv[1], int(sys.argv[2])
t0, t1, t2, t3 = map(float, sys.argv[3:7])
b0, b1, h0, h1, db, sess, events, bundle = map(int, sys.argv[7:15])
def pooled(kind):
    xs = sorted(x for i in range(1, pairs + 1) for x in json.load(open(f"{work}/{kind}-{i}.json"))["samples_ms"])
    return xs[min(len(xs) - 1, int(len(xs) * 0.99))], len(xs)
idle, ni = pooled("idle"); busy, nb = pooled("busy")
ours, hand = t1 - t0, t3 - t2
print(f"database {db / 1048576:.0f} MiB; the session: {sess / 1048576:.1f} MiB on disk, {events} treatment events")
print(f"protect / by hand (bsdtar+zstd, sqlite3 .backup + integrity_check, sha256sum, restic backup + check subset): {ours / hand:.2f}x  ({ours:.1f} s / {hand:.1f} s)")
print(f"repository growth, ours: {(b1 - b0) / 1048576:.1f} MiB = {100 * (b1 - b0) / db:.2f}% of the database; by hand: {(h1 - h0) / 1048576:.1f} MiB = {100 * (h1 - h0) / db:.2f}%")
print(f"  of which the session's own bundle (media and streams, compressed): {bundle / 1048576:.1f} MiB; the rest, the database copy's changed chunks and metadata: {(b1 - b0 - bundle) / 1048576:.1f} MiB = {100 * (b1 - b0 - bundle) / db:.2f}% of the database")
print(f"recorder p99 commit latency during protect / idle, pooled: {busy / idle:.2f}x  ({busy:.3f} ms over {nb} commits / {idle:.3f} ms over {ni})")
EOF
