#!/usr/bin/env bash
# Installs the pinned provider CLIs the tests run for real into a cache folder outside the repository.
# Idempotent: a CLI already in the cache is kept. Prints the variables that point the tests at them.
set -euo pipefail

CACHE="${UNIFIED_WORKER_CACHE:-$HOME/.cache/unified-worker}"
# The versions, shared with the Dockerfile and the tests.
. "$(dirname "$0")/cli-versions.env"

claude="$CACHE/claude-$CLAUDE_CODE_VERSION/claude"
if [ ! -x "$claude" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "installing Claude Code $CLAUDE_CODE_VERSION into $CACHE" >&2
  # The Python Agent SDK wheel bundles the native binary; it comes from PyPI, which CI can reach.
  python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "claude-agent-sdk==$CLAUDE_SDK_VERSION" >&2
  mkdir -p "$(dirname "$claude")"
  python3 - "$tmp" "$claude" <<'PY'
import glob, shutil, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/claude_agent_sdk-*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open("claude_agent_sdk/_bundled/claude") as src, open(sys.argv[2] + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  chmod +x "$claude.part"
  mv "$claude.part" "$claude"
fi
version=$("$claude" --version)
case "$version" in
  "$CLAUDE_CODE_VERSION"*) ;;
  *) echo "unexpected Claude Code version: $version" >&2; exit 1 ;;
esac
echo "CLAUDE_BIN=$claude"

# The npm package pulls the native binary as an optional dependency; the tests run that binary directly, so
# nothing but npm itself is needed to install it.
copilot_dir="$CACHE/copilot-$COPILOT_VERSION"
copilot="$copilot_dir/node_modules/@github/copilot-linux-x64/copilot"
if [ ! -x "$copilot" ]; then
  echo "installing the Copilot CLI $COPILOT_VERSION into $CACHE" >&2
  mkdir -p "$copilot_dir"
  npm install --silent --no-audit --no-fund --prefix "$copilot_dir" "@github/copilot@$COPILOT_VERSION" >&2
fi
version=$("$copilot" --version)
case "$version" in
  *"$COPILOT_VERSION"*) ;;
  *) echo "unexpected Copilot CLI version: $version" >&2; exit 1 ;;
esac
echo "COPILOT_BIN=$copilot"

# Like Copilot: the npm package pulls the native binary as an optional dependency, and the tests run that binary.
codex_dir="$CACHE/codex-$CODEX_VERSION"
codex="$codex_dir/node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex"
if [ ! -x "$codex" ]; then
  echo "installing the Codex CLI $CODEX_VERSION into $CACHE" >&2
  mkdir -p "$codex_dir"
  npm install --silent --no-audit --no-fund --prefix "$codex_dir" "@openai/codex@$CODEX_VERSION" >&2
fi
version=$("$codex" --version)
case "$version" in
  *"$CODEX_VERSION"*) ;;
  *) echo "unexpected Codex CLI version: $version" >&2; exit 1 ;;
esac
echo "CODEX_BIN=$codex"

# A node program (no native binary): the package's bin link runs it with the node on PATH (20 or newer). No install
# scripts: they would only compile optional add-ons (keychain, pty) that headless runs do without.
gemini_dir="$CACHE/gemini-$GEMINI_VERSION"
gemini="$gemini_dir/node_modules/.bin/gemini"
if [ ! -x "$gemini" ]; then
  echo "installing the Gemini CLI $GEMINI_VERSION into $CACHE" >&2
  mkdir -p "$gemini_dir"
  npm install --silent --no-audit --no-fund --ignore-scripts --prefix "$gemini_dir" "@google/gemini-cli@$GEMINI_VERSION" >&2
fi
# Even --version sets up the CLI's home; a throwaway one keeps the user's own untouched.
gemini_home=$(mktemp -d)
version=$(GEMINI_CLI_HOME="$gemini_home" "$gemini" --version </dev/null)
rm -rf "$gemini_home"
case "$version" in
  "$GEMINI_VERSION") ;;
  *) echo "unexpected Gemini CLI version: $version" >&2; exit 1 ;;
esac
echo "GEMINI_BIN=$gemini"
# Like Copilot's, the npm package carries the native binary in a per-platform optional dependency; the tests run
# that binary directly. Its `-baseline` build is for x64 CPUs without AVX2.
opencode_dir="$CACHE/opencode-$OPENCODE_VERSION"
opencode_platform=linux-x64
grep -qw avx2 /proc/cpuinfo || opencode_platform=linux-x64-baseline
opencode="$opencode_dir/node_modules/opencode-$opencode_platform/bin/opencode"
if [ ! -x "$opencode" ]; then
  echo "installing opencode $OPENCODE_VERSION into $CACHE" >&2
  mkdir -p "$opencode_dir"
  npm install --silent --no-audit --no-fund --prefix "$opencode_dir" "opencode-ai@$OPENCODE_VERSION" >&2
fi
version=$("$opencode" --version)
case "$version" in
  "$OPENCODE_VERSION") ;;
  *) echo "unexpected opencode version: $version" >&2; exit 1 ;;
esac
echo "OPENCODE_BIN=$opencode"

# The ACP adapter for Claude Code: a node program (node 20 or newer on PATH) that drives the pinned native CLI named
# by CLAUDE_CODE_EXECUTABLE (it also carries the SDK's cli.js, used only without that variable). The package's bin
# link has a node shebang, so it runs directly. It has no --version: an ACP `initialize` names it (and proves that
# it runs); it exits when its stdin ends.
claude_acp_dir="$CACHE/claude-agent-acp-$CLAUDE_ACP_VERSION"
claude_acp="$claude_acp_dir/node_modules/.bin/claude-agent-acp"
if [ ! -x "$claude_acp" ]; then
  echo "installing claude-agent-acp $CLAUDE_ACP_VERSION into $CACHE" >&2
  mkdir -p "$claude_acp_dir"
  npm install --silent --no-audit --no-fund --prefix "$claude_acp_dir" "@zed-industries/claude-agent-acp@$CLAUDE_ACP_VERSION" >&2
fi
claude_acp_home=$(mktemp -d)
version=$(printf '%s\n' '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":1,"clientCapabilities":{}}}' \
  | HOME="$claude_acp_home" "$claude_acp" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{
      try{console.log(JSON.parse(s.split("\n")[0]).result.agentInfo.version)}catch(e){console.log("none: "+s)}})')
rm -rf "$claude_acp_home"
case "$version" in
  "$CLAUDE_ACP_VERSION") ;;
  *) echo "unexpected claude-agent-acp version: $version" >&2; exit 1 ;;
esac
echo "CLAUDE_ACP_BIN=$claude_acp"

# The ACP adapter for Codex: like Codex itself, the npm package pulls a native binary (it embeds Codex; no separate
# codex binary is needed) as an optional dependency, and the tests run that binary. It has no --version and, unlike
# the other agents, does not exit when its stdin ends: the package.json of the binary's package tells the version.
codex_acp_dir="$CACHE/codex-acp-$CODEX_ACP_VERSION"
codex_acp_pkg_dir="$codex_acp_dir/node_modules/@zed-industries/codex-acp-linux-x64"
codex_acp="$codex_acp_pkg_dir/bin/codex-acp"
if [ ! -x "$codex_acp" ]; then
  echo "installing codex-acp $CODEX_ACP_VERSION into $CACHE" >&2
  mkdir -p "$codex_acp_dir"
  npm install --silent --no-audit --no-fund --prefix "$codex_acp_dir" "@zed-industries/codex-acp@$CODEX_ACP_VERSION" >&2
fi
version=$(node -p 'require(process.argv[1]).version' "$codex_acp_pkg_dir/package.json")
case "$version" in
  "$CODEX_ACP_VERSION") ;;
  *) echo "unexpected codex-acp version: $version" >&2; exit 1 ;;
esac
"$codex_acp" --help >/dev/null
echo "CODEX_ACP_BIN=$codex_acp"
