#!/usr/bin/env bash
# Upgrade an installed Ringfence in place: build the new wheel, stop the services, install it
# into the venv, migrate the database, start the services. The config is left as it is.
# Same environment overrides as install.sh (DESTDIR, PREFIX, SYSCONFDIR, STATEDIR...).
set -euo pipefail
exec "$(dirname "$0")/install.sh" --upgrade "$@"
