#!/usr/bin/env bash
# Start the gateway and the web UI side by side; stop both when either exits or on Ctrl-C.
# Two processes on purpose: the web UI must never be able to take call handling down.
set -u
py=$1
config=$2
"$py" -m gateway --config "$config" run &
gateway=$!
web=""
if "$py" -m gateway --config "$config" web --help >/dev/null 2>&1; then
  "$py" -m gateway --config "$config" web &
  web=$!
fi
trap 'kill $gateway $web 2>/dev/null; wait' INT TERM
wait -n $gateway $web
status=$?
kill $gateway $web 2>/dev/null
wait
exit $status
