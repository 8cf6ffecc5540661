#!/usr/bin/env bash
# Make sure what LabelHub runs on is here and running: ffmpeg, PostgreSQL, Redis
# (and, with --test, Chromium and fonts for the browser tests).
# Installs missing Debian packages when run as root; otherwise says what to install.
# Services on another host (LABELHUB_DB_HOST / LABELHUB_REDIS_URL not on this machine) are only checked.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

WITH_TEST=0
[ "${1:-}" = "--test" ] && WITH_TEST=1

# The database and Redis the .env names, if there is one (the venv exists after setup.sh).
if [ -x "$PY" ]; then load_env; fi
DB_HOST="${LABELHUB_DB_HOST:-127.0.0.1}"
DB_PORT="${LABELHUB_DB_PORT:-5432}"
DB_USER="${LABELHUB_DB_USER:-postgres}"
REDIS_URL="${LABELHUB_REDIS_URL:-redis://127.0.0.1:6379/0}"
_redis_hostport="${REDIS_URL#*://}"; _redis_hostport="${_redis_hostport##*@}"; _redis_hostport="${_redis_hostport%%/*}"
REDIS_HOST="${_redis_hostport%%:*}"
REDIS_PORT="${_redis_hostport##*:}"; [ "$REDIS_PORT" = "$_redis_hostport" ] && REDIS_PORT=6379

is_local() { case "$1" in 127.0.0.1|localhost|::1|"") return 0 ;; *) return 1 ;; esac; }

# --- media and browser tools ---------------------------------------------------------------------
missing=()
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
if [ "$WITH_TEST" -eq 1 ]; then
    command -v chromium >/dev/null || missing+=(chromium)
    for font in fonts-dejavu-core fonts-liberation; do has_pkg "$font" || missing+=("$font"); done
fi
[ "${#missing[@]}" -eq 0 ] || apt_install "${missing[@]}"

# --- PostgreSQL ----------------------------------------------------------------------------------
pg_ready() { pg_isready -q -h "$DB_HOST" -p "$DB_PORT" 2>/dev/null; }
pg_login() { PGPASSWORD="${LABELHUB_DB_PASSWORD:-}" psql -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" -d postgres -Atqc 'select 1' >/dev/null 2>&1; }

if is_local "$DB_HOST"; then
    installed_pg=0
    if ! command -v pg_lsclusters >/dev/null; then
        apt_install postgresql
        installed_pg=1
    fi
    if ! pg_ready; then
        # Start every local cluster that is down (normally just <version> main).
        while read -r version cluster port status _; do
            if [ "$status" = "down" ]; then
                is_root || die "PostgreSQL $version/$cluster is down; start it with: sudo pg_ctlcluster $version $cluster start"
                say "starting PostgreSQL $version/$cluster (port $port)"
                pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start
            fi
        done < <(pg_lsclusters --no-header 2>/dev/null)
        for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
        pg_ready || die "PostgreSQL is not answering on $DB_HOST:$DB_PORT (see /var/log/postgresql/)"
    fi
    if ! pg_login; then
        # A fresh Debian cluster only lets 'postgres' in through the local socket (peer auth).
        # Where we installed it ourselves (or in CI) let loopback TCP in without a password.
        if is_root && { [ "$installed_pg" -eq 1 ] || [ "${CI:-}" = "true" ] || [ "${LABELHUB_PG_TRUST_LOOPBACK:-}" = "1" ]; }; then
            hba="$(su postgres -c "psql -p $DB_PORT -Atqc 'show hba_file'")"
            say "allowing loopback connections without a password in $hba"
            sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
            su postgres -c "psql -p $DB_PORT -Atqc 'select pg_reload_conf()'" >/dev/null
            sleep 1
        fi
        pg_login || die "cannot log in to PostgreSQL at $DB_HOST:$DB_PORT as '$DB_USER'.
Set LABELHUB_DB_USER / LABELHUB_DB_PASSWORD, or (a dev machine) let loopback in:
  sudo LABELHUB_PG_TRUST_LOOPBACK=1 $0"
    fi
    say "PostgreSQL is up on $DB_HOST:$DB_PORT"
else
    pg_ready || die "PostgreSQL at $DB_HOST:$DB_PORT is not answering"
    say "PostgreSQL at $DB_HOST:$DB_PORT answers"
fi

# --- Redis ---------------------------------------------------------------------------------------
redis_ping() {  # bash's /dev/tcp, so redis-cli is not needed
    local reply
    exec 3<>"/dev/tcp/$REDIS_HOST/$REDIS_PORT" 2>/dev/null || return 1
    printf 'PING\r\n' >&3
    IFS= read -r -t 2 reply <&3 || reply=""
    exec 3<&- 3>&-
    [[ "$reply" == +PONG* ]]
}

if ! redis_ping; then
    is_local "$REDIS_HOST" || die "Redis at $REDIS_HOST:$REDIS_PORT is not answering"
    command -v redis-server >/dev/null || apt_install redis-server
    say "starting redis-server on 127.0.0.1:$REDIS_PORT"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no >/dev/null
    for _ in $(seq 1 20); do redis_ping && break; sleep 0.5; done
    redis_ping || die "redis-server did not come up on 127.0.0.1:$REDIS_PORT"
fi
say "Redis is up on $REDIS_HOST:$REDIS_PORT"
