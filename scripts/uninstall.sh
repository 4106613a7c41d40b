#!/usr/bin/env bash
# Remove Ringfence's services, venv and wrapper. The config (/etc/ringfence) and the data
# (/var/lib/ringfence: database, voicemail) are kept unless PURGE=1; the user is kept too, so
# a reinstall finds its files owned as before. Same overrides as install.sh.
set -euo pipefail
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/opt/ringfence}
SYSCONFDIR=${SYSCONFDIR:-/etc/ringfence}
STATEDIR=${STATEDIR:-/var/lib/ringfence}
UNITDIR=${UNITDIR:-/etc/systemd/system}
BINDIR=${BINDIR:-/usr/local/bin}
UNITS="ringfence-gateway.service ringfence-web.service"

say() { printf 'ringfence uninstall: %s\n' "$*"; }
if [ -z "$DESTDIR" ] && [ "$(id -u)" != 0 ]; then
  echo "ringfence uninstall: run as root (sudo make uninstall)" >&2
  exit 1
fi
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
  # shellcheck disable=SC2086 # two unit names
  systemctl disable --now $UNITS 2>/dev/null || true
else
  say "not running systemctl (DESTDIR set or systemd not PID 1)"
fi
for unit in $UNITS; do
  rm -f "$DESTDIR$UNITDIR/$unit"
done
[ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && systemctl daemon-reload
rm -rf "$DESTDIR$PREFIX"
rm -f "$DESTDIR$BINDIR/ringfence"
if [ -n "${PURGE:-}" ]; then
  say "PURGE set: deleting $SYSCONFDIR and $STATEDIR (database, voicemail, prompts)"
  rm -rf "$DESTDIR$SYSCONFDIR" "$DESTDIR$STATEDIR"
else
  say "kept $SYSCONFDIR and $STATEDIR; PURGE=1 deletes them too"
fi
say "done"
