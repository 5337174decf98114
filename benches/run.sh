#!/usr/bin/env bash
# One command for the performance suite: builds the release binary, starts a throwaway
# PostgreSQL cluster when its binaries are installed, and runs `hearth bench` on SQLite and
# PostgreSQL. Extra arguments go to `hearth bench` (e.g. --clients 16 --seconds 10, or
# --search [--patients N] for the search suite).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/hearth
dbs=(--database "sqlite://$(mktemp -d)/bench.db")

bindir=$(pg_config --bindir 2>/dev/null || true)
[ -x "$bindir/initdb" ] || bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
if [ -n "$bindir" ] && [ -x "$bindir/initdb" ]; then
  pgdir=$(mktemp -d /tmp/hearth-bench-pg.XXXXXX)
  as=()
  if [ "$(id -u)" = 0 ]; then chown postgres "$pgdir"; as=(runuser -u postgres --); fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "${as[@]}" "$bindir/initdb" -D "$pgdir/data" -U postgres --auth=trust -E UTF8 >/dev/null
  # Durable settings (fsync on), as production would run.
  "${as[@]}" "$bindir/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w \
    -o "-p $port -k $pgdir -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
  trap '"${as[@]}" "$bindir/pg_ctl" -D "$pgdir/data" -m fast stop >/dev/null 2>&1; rm -rf "$pgdir"' EXIT
  dbs+=(--database "postgres://postgres@127.0.0.1:$port/postgres")
else
  echo "PostgreSQL binaries not found: measuring SQLite only" >&2
fi
HEARTH_LOG="${HEARTH_LOG:-warn,sqlx=error}" "$bin" bench "${dbs[@]}" "$@"
