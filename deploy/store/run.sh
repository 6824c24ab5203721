#!/bin/sh
# Runs the fleet's store (Redis with AOF in /data), or with `ping` checks that it answers (the healthcheck).
# The password comes from STORE_PASSWORD_FILE (a Swarm secret) and goes into a config file only this user reads,
# never onto the command line, where `ps` would show it.
set -eu
umask 077
password=""
if [ -n "${STORE_PASSWORD_FILE:-}" ]; then
  [ -r "$STORE_PASSWORD_FILE" ] || { echo "store: STORE_PASSWORD_FILE is not readable: $STORE_PASSWORD_FILE" >&2; exit 1; }
  password=$(cat "$STORE_PASSWORD_FILE")
fi

if [ "${1:-}" = ping ]; then
  [ -z "$password" ] || export REDISCLI_AUTH="$password"
  redis-cli -p 6379 ping | grep -q PONG
  exit
fi

conf=/tmp/store.conf
{
  echo "port 6379"
  echo "bind 0.0.0.0"
  # Reached only on the stack's own network; with a password set, protected mode adds nothing.
  echo "protected-mode no"
  echo "dir /data"
  echo "appendonly yes"
  echo "appendfsync everysec"
  echo 'save ""'
  [ -z "$password" ] || printf 'requirepass "%s"\n' "$password"
} >"$conf"
exec redis-server "$conf"
