#!/bin/sh
# Puts the provider credentials where the CLIs look for them, then becomes the worker (exec, so tini's signals reach
# it). Secret values are never printed; only the names of missing files are.
#
#   CLAUDE_CODE_CREDENTIALS_JSON    Claude credentials JSON in the environment (compose / .env)
#   CLAUDE_CODE_CREDENTIALS_SECRET  a file holding it, e.g. /run/secrets/claude_credentials (swarm)
#      → with BROKER=off: $CLAUDE_CONFIG_DIR/.credentials.json, mode 0600. The CLI refreshes OAuth tokens in that
#        file, so it must be a private copy, not the read-only secret. An existing file is kept: it may hold a
#        refreshed token. With the broker on (the default) the worker reads them itself: an access token that
#        outlives a job is then never a file the agent could read.
#   CURSOR_API_KEY_SECRET           file → CURSOR_API_KEY        (default /run/secrets/cursor_api_key)
#   COPILOT_GITHUB_TOKEN_SECRET     file → COPILOT_GITHUB_TOKEN  (default /run/secrets/copilot_github_token)
#   OPENAI_API_KEY_SECRET           file → OPENAI_API_KEY        (default /run/secrets/openai_api_key; Codex)
#   GEMINI_API_KEY_SECRET           file → GEMINI_API_KEY        (default /run/secrets/gemini_api_key)
#      → exported to the worker only; the variable never appears in the container's configuration.
set -eu
umask 077

config_dir="${CLAUDE_CONFIG_DIR:-$HOME/.claude}"
credentials="$config_dir/.credentials.json"
case "$(printf '%s' "${BROKER:-on}" | tr '[:upper:]' '[:lower:]')" in
  0|false|no|off) broker=off ;;
  *) broker=on ;;
esac
if [ "$broker" = off ] && [ ! -s "$credentials" ]; then
  if [ -n "${CLAUDE_CODE_CREDENTIALS_JSON:-}" ]; then
    mkdir -p "$config_dir"
    printf '%s' "$CLAUDE_CODE_CREDENTIALS_JSON" > "$credentials.tmp"
    chmod 0600 "$credentials.tmp"
    mv "$credentials.tmp" "$credentials"
  elif [ -n "${CLAUDE_CODE_CREDENTIALS_SECRET:-}" ]; then
    if [ -r "$CLAUDE_CODE_CREDENTIALS_SECRET" ]; then
      mkdir -p "$config_dir"
      cat "$CLAUDE_CODE_CREDENTIALS_SECRET" > "$credentials.tmp"
      chmod 0600 "$credentials.tmp"
      mv "$credentials.tmp" "$credentials"
    else
      echo "entrypoint: CLAUDE_CODE_CREDENTIALS_SECRET names $CLAUDE_CODE_CREDENTIALS_SECRET, which is not readable" >&2
    fi
  fi
fi
# The worker would write the same file itself; once it exists the variable has done its job and stays out of the
# worker's environment (the worker withholds it from every child either way).
if [ "$broker" = off ]; then
  unset CLAUDE_CODE_CREDENTIALS_JSON
fi

# token_from_file VAR FILE: exports VAR from FILE unless VAR is already set.
token_from_file() {
  eval "current=\${$1:-}"
  if [ -z "$current" ] && [ -r "$2" ]; then
    value=$(cat "$2")
    export "$1=$value"
  fi
}
token_from_file CURSOR_API_KEY "${CURSOR_API_KEY_SECRET:-/run/secrets/cursor_api_key}"
token_from_file COPILOT_GITHUB_TOKEN "${COPILOT_GITHUB_TOKEN_SECRET:-/run/secrets/copilot_github_token}"
token_from_file OPENAI_API_KEY "${OPENAI_API_KEY_SECRET:-/run/secrets/openai_api_key}"
token_from_file GEMINI_API_KEY "${GEMINI_API_KEY_SECRET:-/run/secrets/gemini_api_key}"
unset current value

exec "$@"
