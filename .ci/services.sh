#!/usr/bin/env bash
# Called by .ci/run before the tests. Nothing to start here: test/helpers/services.ts starts
# a redis-server and a PostgreSQL cluster per test file (free 127.0.0.1 ports, temp dirs,
# stopped by PID), so parallel test files never share a server. This script only reports
# what those helpers will find, so a backend the catalog tests skip is explained in the
# CI log, and it never fails the build by itself.
set -u

echo "== catalog test services"
if command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ]; then
  echo "redis-server: $(redis-server --version 2>/dev/null | head -n1)"
else
  echo "redis-server: missing (the Redis catalog tests will be skipped)"
fi

pg_bin=""
for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
  if [ -x "$d/initdb" ] && [ -x "$d/postgres" ]; then pg_bin="$d"; break; fi
done
if [ -n "$pg_bin" ]; then
  echo "postgres: $("$pg_bin/postgres" --version 2>/dev/null) in $pg_bin"
  if [ "$(id -u)" = "0" ]; then
    if getent passwd postgres >/dev/null 2>&1; then
      echo "running as root: PostgreSQL will run as the postgres account ($(id postgres))"
    else
      echo "running as root and there is no postgres account: the PostgreSQL catalog tests will fail"
    fi
  fi
else
  echo "postgres: missing (the PostgreSQL catalog tests will be skipped)"
fi
exit 0
