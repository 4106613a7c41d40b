#!/usr/bin/env bash
# Install (or upgrade) Ringfence as a service on Debian 12 / Raspberry Pi OS (bookworm).
#
#   sudo make install          # or: sudo scripts/install.sh
#   sudo make upgrade          # or: sudo scripts/upgrade.sh  (same steps, services restarted)
#
# What it does, each step safe to repeat:
#   - the system user `ringfence` (no login, no home of its own);
#   - /etc/ringfence/config.toml from config.example.toml, only when there is none: an owner's
#     config is never overwritten; the installed copy keeps its data in /var/lib/ringfence;
#   - /var/lib/ringfence, owned by ringfence, the only folder the services may write;
#   - a venv in /opt/ringfence/venv with Ringfence installed from a wheel (not editable), so
#     the checkout can be deleted or moved afterwards;
#   - the built-in voice prompts rendered into the venv's package (espeak-ng);
#   - the database schema migrated (`ringfence db upgrade`), as the ringfence user;
#   - the systemd units, enabled and started (restarted on upgrade);
#   - /usr/local/bin/ringfence, a wrapper that runs the CLI as ringfence with the config.
#
# Overrides (environment): DESTDIR (a throwaway root: no user, no chown, no systemctl),
# PREFIX (/opt/ringfence), SYSCONFDIR (/etc/ringfence), STATEDIR (/var/lib/ringfence),
# UNITDIR (/etc/systemd/system), BINDIR (/usr/local/bin), RINGFENCE_USER (ringfence),
# PYTHON (/usr/bin/python3), PIP_INSTALL_ARGS (extra pip options, e.g. --no-index --find-links DIR),
# SKIP_APT=1 (do not apt-get install python3-venv espeak-ng sox), SKIP_PROMPTS=1.
set -euo pipefail

MODE=install
if [ "${1:-}" = "--upgrade" ]; then
  MODE=upgrade
  shift
fi
if [ $# -gt 0 ]; then
  echo "usage: $0 [--upgrade]   (settings come from the environment; see the header)" >&2
  exit 2
fi

SRC=$(cd "$(dirname "$0")/.." && pwd)
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/opt/ringfence}
SYSCONFDIR=${SYSCONFDIR:-/etc/ringfence}
STATEDIR=${STATEDIR:-/var/lib/ringfence}
UNITDIR=${UNITDIR:-/etc/systemd/system}
BINDIR=${BINDIR:-/usr/local/bin}
RINGFENCE_USER=${RINGFENCE_USER:-ringfence}
# The distribution's Python by default: a python3 found first on root's PATH (pyenv, conda)
# may live under /root, where the service user cannot run it.
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
  [ -x /usr/bin/python3 ] && PYTHON=/usr/bin/python3
fi
PIP_INSTALL_ARGS=${PIP_INSTALL_ARGS:-}
UNITS="ringfence-gateway.service ringfence-web.service"

VENV="$DESTDIR$PREFIX/venv"
CONFIG="$DESTDIR$SYSCONFDIR/config.toml"
DATA="$DESTDIR$STATEDIR"

say() { printf 'ringfence %s: %s\n' "$MODE" "$*"; }
die() { printf 'ringfence %s: error: %s\n' "$MODE" "$*" >&2; exit 1; }

IS_ROOT=0
[ "$(id -u)" = 0 ] && IS_ROOT=1
# A real install changes users, ownership and services; a DESTDIR install only lays out files.
REAL=0
[ -z "$DESTDIR" ] && [ "$IS_ROOT" = 1 ] && REAL=1
if [ -z "$DESTDIR" ] && [ "$IS_ROOT" = 0 ]; then
  die "run as root (sudo make $MODE), or set DESTDIR to install into a throwaway root"
fi
# systemd is in charge only when it runs as PID 1 (not in a container or chroot).
SYSTEMD=0
[ -d /run/systemd/system ] && SYSTEMD=1

as_service_user() {
  if [ "$REAL" = 1 ]; then
    # From a folder the user can read: the caller's cwd may be /root.
    (cd "$DATA" && runuser -u "$RINGFENCE_USER" -- "$@")
  else
    "$@"
  fi
}

systemctl_or_say() {
  if [ -n "$DESTDIR" ]; then
    say "DESTDIR is set: not running systemctl $*"
  elif [ "$SYSTEMD" = 0 ]; then
    say "systemd is not PID 1 here: not running systemctl $*"
  else
    systemctl "$@"
  fi
}

# ------------------------------------------------------------------ prerequisites
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "$PYTHON is older than 3.11 (Debian 12 / Raspberry Pi OS bookworm have 3.11)"
if [ "$REAL" = 1 ] && [ -z "${SKIP_APT:-}" ] && command -v apt-get >/dev/null; then
  missing=""
  for pkg in python3-venv espeak-ng sox; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
  done
  if [ -n "$missing" ]; then
    say "installing Debian packages:$missing"
    apt-get update -qq
    # shellcheck disable=SC2086 # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  fi
fi
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null \
  || die "$PYTHON cannot create a venv: apt-get install python3-venv"
if [ "$MODE" = upgrade ] && [ ! -x "$VENV/bin/ringfence" ]; then
  die "Ringfence is not installed in $PREFIX: run make install first"
fi

# ------------------------------------------------------------------ user and folders
if [ "$REAL" = 1 ]; then
  if ! getent passwd "$RINGFENCE_USER" >/dev/null; then
    say "creating the system user $RINGFENCE_USER"
    useradd --system --user-group --home-dir "$STATEDIR" --no-create-home \
      --shell /usr/sbin/nologin --comment "Ringfence call screening" "$RINGFENCE_USER"
  fi
else
  say "DESTDIR install: not creating the user $RINGFENCE_USER nor changing ownership"
fi
install -d -m 0755 "$DESTDIR$PREFIX" "$DESTDIR$UNITDIR" "$DESTDIR$BINDIR"
install -d -m 0750 "$DESTDIR$SYSCONFDIR" "$DATA"
if [ "$REAL" = 1 ]; then
  chown "root:$RINGFENCE_USER" "$DESTDIR$SYSCONFDIR"
  chown "$RINGFENCE_USER:$RINGFENCE_USER" "$DATA"
fi

# ------------------------------------------------------------------ configuration
if [ -e "$CONFIG" ]; then
  say "keeping the existing $SYSCONFDIR/config.toml"
else
  say "writing $SYSCONFDIR/config.toml from config.example.toml"
  tmp_config=$(mktemp)
  # The example keeps data next to itself; an installed copy keeps it where the units allow.
  sed -e "s|^data_dir = .*|data_dir = \"$STATEDIR\"|" "$SRC/config.example.toml" > "$tmp_config"
  grep -q "^data_dir = \"$STATEDIR\"" "$tmp_config" \
    || die "config.example.toml has no data_dir line to point at $STATEDIR"
  install -m 0640 "$tmp_config" "$CONFIG"
  rm -f "$tmp_config"
  [ "$REAL" = 1 ] && chown "root:$RINGFENCE_USER" "$CONFIG"
fi

# ------------------------------------------------------------------ build the wheel
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Built from a copy, so no root-owned build/ or *.egg-info is left in the checkout.
mkdir "$work/src"
tar -C "$SRC" --exclude=./.git --exclude=./.venv --exclude=./data --exclude=./build \
  --exclude='*.egg-info' --exclude=__pycache__ --exclude=.pytest_cache --exclude=.mypy_cache \
  --exclude=.ruff_cache -cf - . | tar -C "$work/src" -xf -
if [ ! -x "$VENV/bin/python" ]; then
  say "creating the venv $PREFIX/venv"
  "$PYTHON" -m venv "$VENV"
fi
if [ "$REAL" = 1 ] && ! as_service_user "$VENV/bin/python" -c '' 2>/dev/null; then
  die "$RINGFENCE_USER cannot run $VENV/bin/python (its base, $(readlink -f "$VENV/bin/python"), \
is not readable by that user): remove $PREFIX/venv and run again with PYTHON=/usr/bin/python3"
fi
say "building the Ringfence wheel"
# shellcheck disable=SC2086 # PIP_INSTALL_ARGS is a list of options
"$VENV/bin/python" -m pip wheel --quiet --no-deps $PIP_INSTALL_ARGS -w "$work/wheel" "$work/src"
wheel=$(find "$work/wheel" -name 'ringfence-*.whl' | head -n 1)
[ -n "$wheel" ] || die "no wheel was built"

# ------------------------------------------------------------------ install, migrate, start
if [ "$MODE" = upgrade ]; then
  # Stopped before the files change and the schema moves, started again at the end.
  # shellcheck disable=SC2086 # two unit names
  systemctl_or_say stop $UNITS
fi
say "installing $(basename "$wheel") into $PREFIX/venv"
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install --quiet $PIP_INSTALL_ARGS "$wheel"
# The version number does not change between development builds: force our own files in.
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install --quiet --no-deps --force-reinstall $PIP_INSTALL_ARGS "$wheel"
version=$("$VENV/bin/ringfence" --version)
say "installed $version"

run_config="$CONFIG"
if [ -n "$DESTDIR" ]; then
  # The installed config names the real /var/lib/ringfence; point a copy into DESTDIR.
  run_config="$work/config.toml"
  sed -e "s|^data_dir = .*|data_dir = \"$DATA\"|" "$CONFIG" > "$run_config"
fi
if [ -z "${SKIP_PROMPTS:-}" ] && "$VENV/bin/python" -c 'import gateway.prompts.generate' \
    2>/dev/null; then
  # Rendered into the package inside the venv, not into the data folder: the data folder's
  # prompts/ is where the owner's own recordings go, and a re-render must never overwrite them.
  say "rendering the built-in voice prompts into the venv"
  "$VENV/bin/python" -m gateway.prompts.generate \
    || say "WARNING: prompts not rendered (is espeak-ng installed?); calls that need a \
prompt will fail until: sudo $PREFIX/venv/bin/python -m gateway.prompts.generate"
fi
say "migrating the database"
as_service_user "$VENV/bin/ringfence" --config "$run_config" db upgrade

say "installing the systemd units into $UNITDIR"
for unit in $UNITS; do
  sed -e "s|/opt/ringfence|$PREFIX|g" -e "s|/etc/ringfence|$SYSCONFDIR|g" \
    -e "s|/var/lib/ringfence|$STATEDIR|g" \
    -e "s|^User=ringfence$|User=$RINGFENCE_USER|" -e "s|^Group=ringfence$|Group=$RINGFENCE_USER|" \
    "$SRC/systemd/$unit" > "$work/$unit"
  install -m 0644 "$work/$unit" "$DESTDIR$UNITDIR/$unit"
done
cat > "$work/wrapper" <<EOF
#!/bin/sh
# Installed by Ringfence's install.sh: the CLI with the installed config. As root it runs as
# $RINGFENCE_USER, so files it creates in $STATEDIR stay usable by the services.
RINGFENCE_CONFIG="\${RINGFENCE_CONFIG:-$SYSCONFDIR/config.toml}"
export RINGFENCE_CONFIG
if [ "\$(id -u)" = 0 ]; then
  exec runuser -u $RINGFENCE_USER -- $PREFIX/venv/bin/ringfence "\$@"
fi
exec $PREFIX/venv/bin/ringfence "\$@"
EOF
install -m 0755 "$work/wrapper" "$DESTDIR$BINDIR/ringfence"
if [ -d "$SRC/docs" ]; then
  # The units' Documentation= points here, so `systemctl help` works without the checkout.
  install -d -m 0755 "$DESTDIR$PREFIX/share/doc"
  install -m 0644 "$SRC"/docs/*.md "$DESTDIR$PREFIX/share/doc/"
fi
if [ "$REAL" = 1 ]; then
  chown -R "$RINGFENCE_USER:$RINGFENCE_USER" "$DATA"
fi

systemctl_or_say daemon-reload
if [ "$MODE" = upgrade ]; then
  # shellcheck disable=SC2086
  systemctl_or_say start $UNITS
else
  # shellcheck disable=SC2086
  systemctl_or_say enable $UNITS
  # restart, not start: a second `make install` must load the new code like an upgrade.
  # shellcheck disable=SC2086
  systemctl_or_say restart $UNITS
fi
say "done: $version in $PREFIX, config $SYSCONFDIR/config.toml, data $STATEDIR"
if [ "$MODE" = install ]; then
  say "next: edit $SYSCONFDIR/config.toml ([gateway] listen, [[lines]], [web] listen),"
  say "then: sudo systemctl restart $UNITS; sudo ringfence status"
fi
