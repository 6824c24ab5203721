#!/usr/bin/env bash
# Builds the image and deploys (or updates) the fleet on a Swarm, workers and gateways; safe to run again.
#   ./deploy-swarm.sh            reads .env next to this script when present
# Variables: STACK_NAME (unified-worker), WORKER_IMAGE (unified-worker:latest), STORE_IMAGE (unified-worker-store:latest,
# built from deploy/store), REPLICAS (10 workers),
# GATEWAY_REPLICAS (2), PUBLISHED_PORT (5000, the gateways'),
# CLAUDE_CODE_CREDENTIALS_FILE (a credentials JSON file) or CLAUDE_CODE_CREDENTIALS_JSON, SKIP_BUILD=1 to deploy an
# image built elsewhere, DOCKER_BUILD_ARGS (extra `docker build` arguments), WAIT_SECONDS (300), STACK_FILE (swarm.yml),
# STACK_OVERRIDE (a further stack file layered on it, for site-specific settings).
set -euo pipefail
cd "$(dirname "$0")"

die() { echo "deploy-swarm: $*" >&2; exit 1; }

if [ -f .env ]; then
  set -a
  # shellcheck disable=SC1091
  . ./.env
  set +a
fi
STACK_NAME="${STACK_NAME:-unified-worker}"
export WORKER_IMAGE="${WORKER_IMAGE:-unified-worker:latest}"
export STORE_IMAGE="${STORE_IMAGE:-unified-worker-store:latest}"
export REPLICAS="${REPLICAS:-10}"
export GATEWAY_REPLICAS="${GATEWAY_REPLICAS:-2}"
WAIT_SECONDS="${WAIT_SECONDS:-300}"
SECRET_PREFIX="${STACK_NAME//[^a-zA-Z0-9]/_}_claude_credentials"

command -v docker >/dev/null || die "the docker CLI is not installed"
docker info >/dev/null 2>&1 || die "cannot reach a Docker engine (is dockerd running, may this user use it?)"
swarm_state=$(docker info --format '{{.Swarm.LocalNodeState}}')
[ "$swarm_state" = active ] || die "this engine is not in a swarm (state: $swarm_state); run 'docker swarm init' first"
[ "$(docker info --format '{{.Swarm.ControlAvailable}}')" = true ] || die "this node is not a swarm manager"

# Secrets are immutable: a new content gets a new name (suffixed with its hash), the stack is pointed at it, and
# secrets of this stack no service uses any more are removed afterwards.
credentials=""
if [ -n "${CLAUDE_CODE_CREDENTIALS_FILE:-}" ]; then
  [ -r "$CLAUDE_CODE_CREDENTIALS_FILE" ] || die "CLAUDE_CODE_CREDENTIALS_FILE is not readable: $CLAUDE_CODE_CREDENTIALS_FILE"
  credentials=$(cat "$CLAUDE_CODE_CREDENTIALS_FILE")
elif [ -n "${CLAUDE_CODE_CREDENTIALS_JSON:-}" ]; then
  credentials="$CLAUDE_CODE_CREDENTIALS_JSON"
fi
if [ -n "$credentials" ]; then
  hash=$(printf '%s' "$credentials" | sha256sum | cut -c1-12)
  secret_name="${SECRET_PREFIX}_$hash"
  if ! docker secret inspect "$secret_name" >/dev/null 2>&1; then
    printf '%s' "$credentials" | docker secret create "$secret_name" - >/dev/null
    echo "created secret $secret_name"
  fi
else
  secret_name=$(docker secret ls --filter "name=${SECRET_PREFIX}_" --format '{{.CreatedAt}}\t{{.Name}}' \
    | sort -r | head -n 1 | cut -f2)
  [ -n "$secret_name" ] || die "no Claude credentials: set CLAUDE_CODE_CREDENTIALS_FILE or CLAUDE_CODE_CREDENTIALS_JSON"
  echo "keeping secret $secret_name"
fi
unset credentials CLAUDE_CODE_CREDENTIALS_JSON
export CLAUDE_CREDENTIALS_SECRET_NAME="$secret_name"

# The store's password: made once per stack (random) and kept, since the store's data outlives deploys.
export STORE_PASSWORD_SECRET_NAME="${STACK_NAME//[^a-zA-Z0-9]/_}_store_password"
if ! docker secret inspect "$STORE_PASSWORD_SECRET_NAME" >/dev/null 2>&1; then
  head -c 32 /dev/urandom | sha256sum | cut -c1-48 | tr -d '\n' | docker secret create "$STORE_PASSWORD_SECRET_NAME" - >/dev/null
  echo "created secret $STORE_PASSWORD_SECRET_NAME"
fi

# The key that seals the waiting requests (credentials included) in the store: made once per stack, read by every
# gateway, kept like the password because sealed requests may wait in the store across a deploy.
export STORE_KEY_SECRET_NAME="${STACK_NAME//[^a-zA-Z0-9]/_}_store_key"
if ! docker secret inspect "$STORE_KEY_SECRET_NAME" >/dev/null 2>&1; then
  head -c 32 /dev/urandom | base64 | tr -d '\n' | docker secret create "$STORE_KEY_SECRET_NAME" - >/dev/null
  echo "created secret $STORE_KEY_SECRET_NAME"
fi

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  # shellcheck disable=SC2086
  DOCKER_BUILDKIT=1 docker build ${DOCKER_BUILD_ARGS:-} -t "$WORKER_IMAGE" .
  # shellcheck disable=SC2086
  DOCKER_BUILDKIT=1 docker build ${STORE_BUILD_ARGS:-} -t "$STORE_IMAGE" deploy/store
fi

stack_files=(-c "${STACK_FILE:-swarm.yml}")
[ -z "${STACK_OVERRIDE:-}" ] || stack_files+=(-c "$STACK_OVERRIDE")
docker stack deploy --prune "${stack_files[@]}" "$STACK_NAME"

for old in $(docker secret ls --filter "name=${SECRET_PREFIX}_" --format '{{.Name}}'); do
  [ "$old" = "$secret_name" ] || docker secret rm "$old" >/dev/null 2>&1 || true
done

# wait_healthy SERVICE COUNT: waits until COUNT replicas of SERVICE run. Swarm moves a task with a healthcheck to
# "running" only once it is healthy, so running == healthy here.
wait_healthy() {
  local service="$1" want="$2" replicas running
  echo "waiting up to ${WAIT_SECONDS}s for $want healthy replicas of $service"
  while :; do
    replicas=$(docker service ls --filter "name=$service" --format '{{.Name}} {{.Replicas}}' \
      | awk -v s="$service" '$1 == s { print $2 }')
    running="${replicas%%/*}"
    [ "${running:-0}" -ge "$want" ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
      docker service ps --no-trunc "$service" >&2 || true
      die "only ${running:-0} of $want replicas of $service became healthy within ${WAIT_SECONDS}s"
    fi
    sleep 2
  done
}

deadline=$((SECONDS + WAIT_SECONDS))
wait_healthy "${STACK_NAME}_store" 1
wait_healthy "${STACK_NAME}_worker" "$REPLICAS"
wait_healthy "${STACK_NAME}_gateway" "$GATEWAY_REPLICAS"
docker service ls --filter "label=com.docker.stack.namespace=$STACK_NAME"
docker stack ps "$STACK_NAME" --filter desired-state=running
