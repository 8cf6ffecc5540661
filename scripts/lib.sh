# Shared helpers for the scripts in this folder (sourced, not run).
# Paths, logging, and "install with apt if missing and we are root, else say what to run".

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
VAR_DIR="$ROOT/var"
LOG_DIR="$VAR_DIR/log"
RUN_DIR="$VAR_DIR/run"

if [ -t 1 ]; then _B=$'\033[1m'; _R=$'\033[0m'; else _B=""; _R=""; fi
say() { printf '%s==> %s%s\n' "$_B" "$*" "$_R"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

_APT_UPDATED=0
# apt_install PKG...: install Debian packages when we may; otherwise stop with the command to run.
apt_install() {
    if ! is_root; then
        die "missing: $*. Install with: sudo apt-get install -y $* (then run this again)"
    fi
    command -v apt-get >/dev/null || die "missing: $* and no apt-get here; install them by hand"
    if [ "$_APT_UPDATED" -eq 0 ]; then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        _APT_UPDATED=1
    fi
    say "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# has_pkg PKG: the Debian package is installed.
has_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# pid_alive PIDFILE: the process named in the pid file is running.
pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

need_venv() { [ -x "$PY" ] || die "no virtualenv at $VENV; run: make setup"; }

# write_dev_env: a development .env at the project root if there is none (never overwritten):
# DEBUG on, a fresh secret key, the local services (or the ones this shell names). Every
# `.venv/bin/python manage.py ...` in any new shell then reads it (labelhub/env.py).
write_dev_env() {
    local file="$ROOT/.env"
    [ -e "$file" ] && return 0
    need_venv
    local key
    key="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(50))')"
    say "writing a development .env ($file)"
    (umask 077 && cat >"$file" <<ENV
# Written by scripts/demo.sh for a development machine; never overwritten (edit it, or delete it
# to get a new one). A production host writes its own from .env.example (README, "Configuration").
# Variables set in the environment win over these.
LABELHUB_DEBUG=1
LABELHUB_SECRET_KEY=$key
LABELHUB_DB_NAME=${LABELHUB_DB_NAME:-labelhub}
LABELHUB_DB_USER=${LABELHUB_DB_USER:-postgres}
LABELHUB_DB_HOST=${LABELHUB_DB_HOST:-127.0.0.1}
LABELHUB_DB_PORT=${LABELHUB_DB_PORT:-5432}
LABELHUB_REDIS_URL=${LABELHUB_REDIS_URL:-redis://127.0.0.1:6379/0}
ENV
    )
}

# load_env: put the .env's variables that this shell lacks into it (the scripts' own reads:
# database host, web bind, ...); settings read the same file themselves. A bad line stops here.
load_env() {
    need_venv
    local exports
    exports="$("$PY" -m labelhub.env export)" || die "fix $ROOT/.env (or LABELHUB_ENV_FILE) and run this again"
    eval "$exports"
}
