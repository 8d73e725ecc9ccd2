#!/usr/bin/env bash
# Make a local PostgreSQL server available for the test suite and print its URL (and
# nothing else on stdout). Idempotent.
#
# 1. TEST_POSTGRES_URL set: print it.
# 2. Debian's cluster: install the package when no server is installed, start the newest
#    version's `main` cluster when it is down, create the `blueclerk` role and database.
# 3. When that cluster cannot be used (it will not start, its port is taken, it does not
#    answer), a private cluster: initdb into a directory of its own under /tmp, started
#    with pg_ctl on a free loopback port (as the `postgres` user when run as root, since
#    PostgreSQL refuses to run as root). Its log is printed on failure.
#    ENSURE_POSTGRES_PRIVATE=1 goes straight to this step.
# Exits non-zero, saying why on stderr, when neither works; `make test` then stops.
set -euo pipefail
log() { echo "ensure-postgres: $*" >&2; }

if [[ -n "${TEST_POSTGRES_URL:-}" ]]; then echo "$TEST_POSTGRES_URL"; exit 0; fi

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo -n "$@"; fi; }
# Run a command as the database superuser's OS account (postgres when root).
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then su postgres -s /bin/bash -c "$(printf '%q ' "$@")" </dev/null
  else "$@" </dev/null; fi
}

# apt-get, waiting for another apt's lock and retrying a failed download.
apt() {
  local n
  for n in 1 2 3; do
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 "$@" \
      >&2 </dev/null && return 0
    log "apt-get $* failed (try $n of 3)"; sleep $((n * 10))
  done
  return 1
}

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  log "installing PostgreSQL from Debian's packages"
  apt update -qq
  apt install -y -qq postgresql
fi
version=$(ls /usr/lib/postgresql | sort -V | tail -1)
bin=/usr/lib/postgresql/$version/bin

# Create the role and database through `psql` at host:port as the OS superuser; the URL
# on success. $1 host (a socket directory or 127.0.0.1), $2 port.
provision() {
  local host=$1 port=$2 ok=""
  psql_pg() { as_pg "$bin/psql" -h "$host" -p "$port" -d postgres -v ON_ERROR_STOP=1 -qAt "$@"; }
  for _ in $(seq 1 60); do
    if psql_pg -c "select 1" >/dev/null 2>&1; then ok=1; break; fi
    sleep 1
  done
  if [[ -z $ok ]]; then log "no answer from PostgreSQL at $host:$port"; return 1; fi
  if [[ "$(psql_pg -c "select 1 from pg_roles where rolname='blueclerk'")" != "1" ]]; then
    psql_pg -c "create role blueclerk login superuser password 'blueclerk'" >&2 || return 1
  fi
  if [[ "$(psql_pg -c "select 1 from pg_database where datname='blueclerk_test'")" != "1" ]]; then
    psql_pg -c "create database blueclerk_test owner blueclerk" >&2 || return 1
  fi
  echo "postgresql://blueclerk:blueclerk@127.0.0.1:${port}/blueclerk_test"
}

debian_cluster() {
  command -v pg_lsclusters >/dev/null || { log "pg_lsclusters not found"; return 1; }
  if ! pg_lsclusters -h 2>/dev/null | awk -v v="$version" '$1==v && $2=="main"' | grep -q .; then
    log "creating cluster $version/main"
    as_root pg_createcluster "$version" main >&2 </dev/null || return 1
  fi
  if ! pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" {print $4}' | grep -q online; then
    log "starting cluster $version/main"
    if ! as_root pg_ctlcluster "$version" main start >&2 </dev/null; then
      log "cluster $version/main did not start; its log:"
      tail -n 30 "/var/log/postgresql/postgresql-$version-main.log" >&2 2>/dev/null || true
      return 1
    fi
  fi
  local port
  port=$(pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" {print $3}')
  provision /var/run/postgresql "$port"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

private_cluster() {
  local dir=/tmp/blueclerk-postgres-$version port
  if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
    log "no postgres OS user for a private cluster"; return 1
  fi
  if [[ -f $dir/port ]] && as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    provision "$dir" "$(cat "$dir/port")"; return
  fi
  log "starting a private cluster in $dir"
  rm -rf "$dir"; mkdir -p "$dir"
  [[ $(id -u) -eq 0 ]] && chown postgres "$dir"
  port=$(free_port)
  as_pg "$bin/initdb" -D "$dir/data" -A trust -U postgres >/dev/null || return 1
  as_pg bash -c "echo $port > $dir/port"
  if ! as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
       -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >&2; then
    log "the private cluster did not start; its log:"; tail -n 30 "$dir/log" >&2 || true
    return 1
  fi
  provision "$dir" "$port"
}

# ENSURE_POSTGRES_PRIVATE=1 skips Debian's cluster (to exercise the fallback).
if [[ -z ${ENSURE_POSTGRES_PRIVATE:-} ]] && url=$(debian_cluster); then echo "$url"; exit 0; fi
log "Debian's cluster $version/main is not usable; trying a private cluster"
if url=$(private_cluster); then echo "$url"; exit 0; fi
log "no PostgreSQL server could be started"
exit 1
