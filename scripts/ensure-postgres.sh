#!/usr/bin/env bash
# Make a local PostgreSQL server available for the test suite and print its URL.
# Installs Debian's package when none is installed, starts the cluster when it is
# down, and creates the `blueclerk` role and database. Idempotent.
set -euo pipefail
log() { echo "ensure-postgres: $*" >&2; }

if [[ -n "${TEST_POSTGRES_URL:-}" ]]; then echo "$TEST_POSTGRES_URL"; exit 0; fi

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo -n "$@"; fi; }

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  log "installing PostgreSQL from Debian's packages"
  as_root apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi

version=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h 2>/dev/null | awk -v v="$version" '$1==v && $2=="main"' | grep -q .; then
  log "creating cluster $version/main"
  as_root pg_createcluster "$version" main >&2
fi
if ! pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" {print $4}' | grep -q online; then
  log "starting cluster $version/main"
  as_root pg_ctlcluster "$version" main start >&2
fi
port=$(pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" {print $3}')

psql_pg() { as_root su postgres -c "psql -p $port -v ON_ERROR_STOP=1 -qAt $(printf '%q ' "$@")"; }
for _ in $(seq 1 30); do psql_pg -c "select 1" >/dev/null 2>&1 && break; sleep 1; done
if [[ "$(psql_pg -c "select 1 from pg_roles where rolname='blueclerk'")" != "1" ]]; then
  psql_pg -c "create role blueclerk login superuser password 'blueclerk'" >&2
fi
if [[ "$(psql_pg -c "select 1 from pg_database where datname='blueclerk_test'")" != "1" ]]; then
  psql_pg -c "create database blueclerk_test owner blueclerk" >&2
fi
echo "postgresql://blueclerk:blueclerk@127.0.0.1:${port}/blueclerk_test"
