# unified-worker image. Stages:
#   build        compiles the worker with cargo (--locked) in RUST_IMAGE
#   binary-build takes the binary from `build` (default)
#   binary-host  takes target/release/unified-worker from the build context (CI, where no Rust image can be pulled)
#   clis-install installs the pinned provider CLIs from the internet (default)
#   clis-none    leaves them out (CI; the tests layer a fake CLI on)
# Pick with --build-arg WORKER_BINARY=build|host and --build-arg PROVIDER_CLIS=install|none.
# Unused stages are skipped by BuildKit, so a CI build never touches RUST_IMAGE or NODE_IMAGE.
ARG RUST_IMAGE=rust:1-slim-bookworm
ARG NODE_IMAGE=node:22-bookworm-slim
ARG RUNTIME_IMAGE=debian:bookworm-slim
ARG WORKER_BINARY=build
ARG PROVIDER_CLIS=install

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY bench bench
COPY tests tests
RUN cargo build --release --locked -p unified-worker \
 && install -D -m 0755 target/release/unified-worker /out/unified-worker

FROM ${RUNTIME_IMAGE} AS binary-host
COPY target/release/unified-worker /out/unified-worker

FROM ${RUNTIME_IMAGE} AS binary-build
COPY --from=build /out/unified-worker /out/unified-worker

FROM ${NODE_IMAGE} AS clis-install
# The pinned versions come from scripts/cli-versions.env, the file the tests' installer reads; a build argument of the
# same name overrides one. /tmp/pins.env holds the result, sourced by each step below.
COPY scripts/cli-versions.env /tmp/cli-versions.env
ARG CLAUDE_CODE_VERSION
ARG COPILOT_VERSION
ARG CODEX_VERSION
ARG OPENCODE_VERSION
ARG GEMINI_VERSION
ARG CLAUDE_ACP_VERSION
ARG CODEX_ACP_VERSION
RUN while IFS='=' read -r name value; do \
      case "$name" in [A-Z]*) eval "printf '%s=%s\\n' \"\$name\" \"\${$name:-\$value}\"" ;; esac; \
    done </tmp/cli-versions.env >/tmp/pins.env \
 && cat /tmp/pins.env
# Cursor publishes no version pin for its installer; CURSOR_INSTALL_URL may point at a pinned copy.
ARG CURSOR_INSTALL_URL=https://cursor.com/install
ARG INSTALL_CURSOR=true
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl bash \
 && rm -rf /var/lib/apt/lists/*
# The npm packages carry native binaries as optional dependencies; only those are kept, so the runtime needs no node.
RUN . /tmp/pins.env && mkdir -p /opt/clis/bin /tmp/npm \
 && npm install --no-audit --no-fund --prefix /tmp/npm \
      "@anthropic-ai/claude-code@${CLAUDE_CODE_VERSION}" "@github/copilot@${COPILOT_VERSION}" \
      "@openai/codex@${CODEX_VERSION}" "opencode-ai@${OPENCODE_VERSION}" \
 && cp -a /tmp/npm/node_modules /opt/clis/node_modules \
 && ln -s ../node_modules/@github/copilot-linux-x64/copilot /opt/clis/bin/copilot \
 && codex=$(find /opt/clis/node_modules/@openai -path '*/vendor/*/bin/codex' -type f | head -n 1) \
 && ln -s "$codex" /opt/clis/bin/codex \
 && case "$(uname -m)" in aarch64) opencode_platform=linux-arm64 ;; *) opencode_platform=linux-x64 ;; esac \
 && ln -s "../node_modules/opencode-${opencode_platform}/bin/opencode" /opt/clis/bin/opencode \
 && claude=$(find /opt/clis/node_modules/@anthropic-ai -type f -name claude -perm -u+x | head -n 1) \
 && if [ -n "$claude" ]; then ln -s "$claude" /opt/clis/bin/claude; \
    else cp -a "$(command -v node)" /opt/clis/bin/node \
      && printf '#!/bin/sh\nexec /opt/clis/bin/node /opt/clis/node_modules/@anthropic-ai/claude-code/cli.js "$@"\n' \
           > /opt/clis/bin/claude && chmod 0755 /opt/clis/bin/claude; fi \
 && /opt/clis/bin/claude --version && /opt/clis/bin/copilot --version && /opt/clis/bin/codex --version \
 && /opt/clis/bin/opencode --version
# Gemini CLI is a node program with no native build: it runs on this stage's node, copied next to it (its
# relaunch for a larger heap starts the same node again). No install scripts: they would compile optional add-ons
# (keychain, pty) that headless runs do without, as in the tests. --version sets up a CLI home; a throwaway one.
RUN . /tmp/pins.env && npm install --no-audit --no-fund --ignore-scripts --prefix /opt/clis/gemini "@google/gemini-cli@${GEMINI_VERSION}" \
 && { [ -x /opt/clis/bin/node ] || cp -a "$(command -v node)" /opt/clis/bin/node; } \
 && printf '#!/bin/sh\nexec /opt/clis/bin/node /opt/clis/gemini/node_modules/@google/gemini-cli/bundle/gemini.js "$@"\n' \
      > /opt/clis/bin/gemini && chmod 0755 /opt/clis/bin/gemini \
 && GEMINI_CLI_HOME=/tmp/gemini-home /opt/clis/bin/gemini --version </dev/null && rm -rf /tmp/gemini-home
# The ACP adapters (approvals). claude-agent-acp is a node program like Gemini CLI: it runs on the same copied node
# and drives the native claude above (the worker names it in CLAUDE_CODE_EXECUTABLE). codex-acp is a native binary
# from a per-platform optional dependency (it embeds Codex). Neither has --version: an ACP `initialize` with stdin
# closed proves that claude-agent-acp runs, --help that codex-acp does (it needs libssl3 at runtime).
RUN . /tmp/pins.env && npm install --no-audit --no-fund --prefix /opt/clis/acp \
      "@zed-industries/claude-agent-acp@${CLAUDE_ACP_VERSION}" "@zed-industries/codex-acp@${CODEX_ACP_VERSION}" \
 && { [ -x /opt/clis/bin/node ] || cp -a "$(command -v node)" /opt/clis/bin/node; } \
 && printf '#!/bin/sh\nexec /opt/clis/bin/node /opt/clis/acp/node_modules/@zed-industries/claude-agent-acp/dist/index.js "$@"\n' \
      > /opt/clis/bin/claude-agent-acp && chmod 0755 /opt/clis/bin/claude-agent-acp \
 && case "$(uname -m)" in aarch64) acp_platform=linux-arm64 ;; *) acp_platform=linux-x64 ;; esac \
 && ln -s "../acp/node_modules/@zed-industries/codex-acp-${acp_platform}/bin/codex-acp" /opt/clis/bin/codex-acp \
 && printf '%s\n' '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":1,"clientCapabilities":{}}}' \
      | HOME=/tmp/acp-home /opt/clis/bin/claude-agent-acp | grep -q "\"version\":\"${CLAUDE_ACP_VERSION}\"" \
 && grep -q "\"version\": *\"${CODEX_ACP_VERSION}\"" \
      "/opt/clis/acp/node_modules/@zed-industries/codex-acp-${acp_platform}/package.json" \
 && /opt/clis/bin/codex-acp --help >/dev/null && rm -rf /tmp/acp-home
RUN if [ "$INSTALL_CURSOR" = true ]; then \
      curl -fsSL "$CURSOR_INSTALL_URL" | HOME=/opt/clis/cursor bash \
      && ln -s "$(readlink -f /opt/clis/cursor/.local/bin/cursor-agent)" /opt/clis/bin/cursor-agent; \
    fi

FROM ${RUNTIME_IMAGE} AS clis-none
RUN mkdir -p /opt/clis/bin

FROM binary-${WORKER_BINARY} AS binary
FROM clis-${PROVIDER_CLIS} AS clis

FROM ${RUNTIME_IMAGE} AS runtime
# git and its certificates for cloning; tini as PID 1 reaps whatever a CLI leaves behind; libstdc++ for the node
# runtimes some CLIs bring along (Cursor's bundle, Claude Code's cli.js fallback); libssl3 for codex-acp.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git tini libstdc++6 libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin worker \
 && install -d -o worker -g worker -m 0700 /workspace /home/worker/.claude
COPY --from=clis /opt/clis /opt/clis
COPY --from=binary /out/unified-worker /usr/local/bin/unified-worker
COPY entrypoint.sh /usr/local/bin/entrypoint.sh
ENV PATH=/opt/clis/bin:$PATH \
    WORKSPACE_DIR=/workspace \
    CLAUDE_CONFIG_DIR=/home/worker/.claude \
    PORT=5000
USER worker
WORKDIR /home/worker
EXPOSE 5000
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 CMD ["unified-worker", "healthcheck"]
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/entrypoint.sh"]
CMD ["unified-worker", "serve"]
