#!/usr/bin/env bash
# Runs the installed units under a real systemd (252, Debian 12) in a container:
# debootstrap a minimal bookworm into a folder, `make install` into it, boot it with
# systemd-nspawn, and let a check unit drive the units as a device would:
#   plaintext device (no sealed key: the SetCredential fallback) -> backup, verify + drill;
#   a damaged copy -> the verify unit fails -> tosca-maint-failure@ writes its alert;
#   the key sealed with systemd-creds, the cutover run as root -> backup, verify + drill;
#   an export repository on a "drive" (a tmpfs of its own) with the password sealed and
#   the drive drop-in -> the monthly export unit exports and verifies;
#   the session path unit enabled -> the sessions' markers start the session service,
#   which protects them (bundle, session backup, export to the drive).
# Needs root, network access to a Debian mirror, and `make` run first (release build).
# Not part of the test suite (it downloads ~100 MB and needs container privileges).
#
#   sudo ./scripts/units-in-container.sh [ROOTFS]     (default: /var/tmp/tosca-units-ct)
source "$(dirname "$0")/common.sh"
ROOTFS=${1:-/var/tmp/tosca-units-ct}
[[ $(id -u) -eq 0 ]] || { echo "Error: run as root (debootstrap and systemd-nspawn need it)" >&2; exit 77; }
[[ -x .build/release/tosca-maint && -x .build/release/tosca-sim ]] || { echo "Error: no release build" >&2; echo "Try: make" >&2; exit 66; }
need=()
for p in debootstrap systemd-container age; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p"); done
if (( ${#need[@]} )); then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; fi

if [[ ! -x $ROOTFS/lib/systemd/systemd ]]; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,libarchive13,libsystemd0,acl \
    bookworm "$ROOTFS" "${mirror:-http://deb.debian.org/debian}" >/dev/null
fi
# SQLCipher 4.6 comes from bookworm-backports on the host: the same library goes in.
cp -a /lib/x86_64-linux-gnu/libsqlcipher.so.1* "$ROOTFS/usr/lib/x86_64-linux-gnu/"
# restic (a static binary) likewise: the export engine.
install -m 0755 "$(command -v restic)" "$ROOTFS/usr/bin/restic"
make install DESTDIR="$ROOTFS" >/dev/null
install -m 0755 .build/release/tosca-sim "$ROOTFS/usr/local/bin/tosca-sim"
rm -rf "$ROOTFS/var/lib/tosca" "$ROOTFS/var/lib/prometheus" "$ROOTFS/etc/credstore.encrypted" \
  "$ROOTFS/root/tosca.key" "$ROOTFS/root/results" "$ROOTFS/var/log/journal" "$ROOTFS/etc/tosca-maint" \
  "$ROOTFS/etc/systemd/system/tosca-maint-export.service.d" "$ROOTFS/root/export-pass" \
  "$ROOTFS/etc/systemd/system/tosca-maint-session.service.d" "$ROOTFS/etc/systemd/system/paths.target.wants/tosca-maint-session.path"
# The clinic's age recipient for the bundles (its identity stays on the host).
age-keygen -o "$ROOTFS/root/bundle-identity" 2>/dev/null
age-keygen -y "$ROOTFS/root/bundle-identity" > "$ROOTFS/root/bundle-recipients"
rm -f "$ROOTFS/root/bundle-identity"

cat > "$ROOTFS/usr/local/bin/tosca-units-check" <<'EOF'
#!/bin/bash
# Inside the container: drives the units, writes one "name=value" line per result.
exec 3>/root/results 1>/root/check.log 2>&1
set -x
r() { echo "$1=$2" >&3; }
journalctl --update-catalog
install -d -o tosca -g tosca -m 0700 /var/lib/tosca
runuser -u tosca -- tosca-sim --data-dir /var/lib/tosca --sessions 2 --duration 0.3 --seed 1
install -d -m 0755 /var/lib/prometheus/node-exporter
systemd-tmpfiles --create tosca-maint.conf
systemctl start tosca-maint-backup.service; r backup $?
systemctl start tosca-maint-verify.service; r verify $?
test -s /var/lib/prometheus/node-exporter/tosca.prom; r metrics $?
r owner "$(stat -c %U /var/lib/tosca/backups/.maint.lock)"
f=$(ls /var/lib/tosca/backups/*.db | tail -1); printf 'XXXX' | dd of="$f" bs=1 seek=5000 conv=notrunc
systemctl start tosca-maint-verify.service; r damaged_verify $?
sleep 2
journalctl -t tosca-maint -p crit -o verbose --no-pager | grep -q MESSAGE_ID=fa6ae65e826447c581e91da6298e5e56; r alert $?
journalctl -x -t tosca-maint -p crit --no-pager | grep -q "Subject: TOSCA maintenance unit failed"; r alert_explained $?
runuser -u tosca -- tosca-maint quarantine --failed --data-dir /var/lib/tosca
# The cutover encrypts the plaintext bundles too: to the clinic's age recipient.
install -d -m 0755 /etc/tosca-maint
cp /root/bundle-recipients /etc/tosca-maint/bundle-recipients
tosca-maint keygen --out /root/tosca.key
install -d -m 0700 /etc/credstore.encrypted
systemd-creds encrypt --name=tosca-db-key /root/tosca.key /etc/credstore.encrypted/tosca-db-key.cred; r seal $?
# 65: the damaged copy set aside in quarantine stays plaintext, and the cutover says so.
tosca-maint encrypt --key-file /root/tosca.key --yes --data-dir /var/lib/tosca; r encrypt $?
r owner_after_root_cutover "$(stat -c %U /var/lib/tosca/tosca.db)"
systemctl start tosca-maint-backup.service; r encrypted_backup $?
systemctl start tosca-maint-verify.service; r encrypted_verify $?
journalctl -t tosca-maint --no-pager | grep -c "Failed to set thread priority"; r dispatch_noise "$(journalctl -t tosca-maint --no-pager | grep -c 'Failed to set thread priority')"
r exposure "$(systemd-analyze security tosca-maint-backup.service --no-pager | sed -n 's/.*exposure level for [^:]*: \([0-9.]*\).*/\1/p')"
# The export unit, as the README sets up a drive: the repository password sealed, the
# repository made once by hand, export.conf, the drop-in for the drive's mount point.
chown tosca:tosca /media/tosca-backup
printf 'correct horse battery staple\n' > /root/export-pass; chmod 0600 /root/export-pass
systemd-creds encrypt --name=tosca-export-pass /root/export-pass /etc/credstore.encrypted/tosca-export-pass.cred; r export_seal $?
tosca-maint export init --repo /media/tosca-backup/repo --password-file /root/export-pass --data-dir /var/lib/tosca; r export_init $?
install -d -m 0755 /etc/systemd/system/tosca-maint-export.service.d
echo 'TOSCA_EXPORT_REPO=/media/tosca-backup/repo' > /etc/tosca-maint/export.conf
printf '[Unit]\nRequiresMountsFor=/media/tosca-backup\n[Service]\nReadWritePaths=/media/tosca-backup\n' > /etc/systemd/system/tosca-maint-export.service.d/drive.conf
systemctl daemon-reload
systemctl start tosca-maint-export.service; r export $?
journalctl -t tosca-maint -o verbose --no-pager | grep -q MESSAGE_ID=08e3cb24d401417284b246d8f5567164; r export_journal $?
runuser -u tosca -- tosca-maint status --data-dir /var/lib/tosca | grep -q '^Exports *1 verified'; r export_status $?
e=$(systemd-analyze security tosca-maint-export.service --no-pager | sed -n 's/.*exposure level for [^:]*: \([0-9.]*\).*/\1/p')
r export_exposure "$e"
r export_exposure_ok "$(echo "$e" | awk '{print ($1 != "" && $1 <= 2.0) ? "yes" : "no"}')"
# After-session protection through the real path unit: the markers of the sessions
# recorded at the start still wait in spool/ended, and one more session ends now (the
# recorder has the key); enabling the path unit starts the session service, which
# bundles, backs up and exports them to the drive.
install -o tosca -g tosca -m 0400 /root/tosca.key /run/tosca-sim.key
runuser -u tosca -- tosca-sim --data-dir /var/lib/tosca --sessions 1 --duration 0.3 --seed 2 --key-file /run/tosca-sim.key
r markers_waiting "$(ls /var/lib/tosca/spool/ended | wc -l)"
install -d -m 0755 /etc/systemd/system/tosca-maint-session.service.d
cp /etc/systemd/system/tosca-maint-export.service.d/drive.conf /etc/systemd/system/tosca-maint-session.service.d/drive.conf
systemctl daemon-reload
systemctl enable --now tosca-maint-session.path; r session_path $?
for _ in $(seq 120); do [[ -z $(ls -A /var/lib/tosca/spool/ended) ]] && break; sleep 1; done
r session_protected "$(ls -A /var/lib/tosca/spool/ended | wc -l)"
sleep 2
r session_result "$(systemctl show -p Result --value tosca-maint-session.service)"
journalctl -t tosca-maint -o verbose --no-pager | grep -q MESSAGE_ID=ee1f2022e6b641abb68178e522fdaa6d; r session_journal $?
r session_exports "$(ls /var/lib/tosca/exports/*.manifest.json | wc -l)"
grep -q '^tosca_unprotected_sessions 0$' /var/lib/prometheus/node-exporter/tosca.prom; r session_metrics $?
e=$(systemd-analyze security tosca-maint-session.service --no-pager | sed -n 's/.*exposure level for [^:]*: \([0-9.]*\).*/\1/p')
r session_exposure_ok "$(echo "$e" | awk '{print ($1 != "" && $1 <= 2.0) ? "yes" : "no"}')"
systemctl poweroff
EOF
chmod 0755 "$ROOTFS/usr/local/bin/tosca-units-check"
cat > "$ROOTFS/etc/systemd/system/tosca-units-check.service" <<'EOF'
[Unit]
Description=Drive the tosca-maint units once, then power off
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/usr/local/bin/tosca-units-check
[Install]
WantedBy=multi-user.target
EOF
chroot "$ROOTFS" systemctl enable tosca-units-check.service >/dev/null 2>&1
echo tosca-units-ct > "$ROOTFS/etc/hostname"
# /media/tosca-backup: the export's "drive", a filesystem of its own.
timeout 600 systemd-nspawn -D "$ROOTFS" --boot --register=no --keep-unit -q --tmpfs=/media/tosca-backup >/dev/null 2>&1 || true

[[ -f $ROOTFS/root/results ]] || { echo "Error: the container did not run the check (see systemd-nspawn -D $ROOTFS --boot)" >&2; exit 70; }
cat "$ROOTFS/root/results"
expect="backup=0 verify=0 metrics=0 owner=tosca damaged_verify=1 alert=0 alert_explained=0 seal=0 encrypt=65 owner_after_root_cutover=tosca encrypted_backup=0 encrypted_verify=0 dispatch_noise=0 export_seal=0 export_init=0 export=0 export_journal=0 export_status=0 export_exposure_ok=yes markers_waiting=3 session_path=0 session_protected=0 session_result=success session_journal=0 session_exports=2 session_metrics=0 session_exposure_ok=yes"
fail=0
for e in $expect; do grep -qx "$e" "$ROOTFS/root/results" || { echo "UNEXPECTED: wanted $e" >&2; fail=1; }; done
(( fail == 0 )) && echo "units: every expected result (log: $ROOTFS/root/check.log)"
exit $fail
