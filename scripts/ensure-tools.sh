#!/usr/bin/env bash
# Java and Maven launch the local Kafka broker; install Debian's packages if missing.
set -euo pipefail
missing=()
command -v java >/dev/null || missing+=(default-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
  echo "ensure-tools: installing ${missing[*]}" >&2
  as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo -n "$@"; fi; }
  # Wait for another apt's lock; retry a failed download.
  apt() {
    local n
    for n in 1 2 3; do
      as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 "$@" \
        </dev/null && return 0
      echo "ensure-tools: apt-get $* failed (try $n of 3)" >&2; sleep $((n * 10))
    done
    return 1
  }
  apt update -qq
  apt install -y -qq "${missing[@]}"
fi
