#!/usr/bin/env bash
# Create .venv (Python 3.11) if missing and install the project with its test extras.
# torch is installed first, pinned, so pip never resolves an unpinned (CUDA) torch.
# Skips the pip step when pyproject.toml has not changed since the last successful install.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"

find_python() {
    for candidate in "${PYTHON:-}" python3.11 /usr/bin/python3.11; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

if [ ! -x "$PY" ]; then
    python="$(find_python)" || { apt_install python3.11 python3.11-venv; python="$(find_python)"; }
    if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
        apt_install python3.11-venv
    fi
    say "creating $VENV with $python"
    "$python" -m venv "$VENV"
fi

stamp="$VENV/.labelhub-installed"
want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1) $TORCH_SPEC"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$PY" -c 'import django, torch, labelhub' 2>/dev/null; then
    say "python dependencies up to date ($VENV)"
    exit 0
fi

say "installing $TORCH_SPEC"
"$PY" -m pip install --quiet "$TORCH_SPEC"
say "installing labelhub and its test extras (pip install -e .[test])"
"$PY" -m pip install --quiet -e "$ROOT[test]" "$TORCH_SPEC"
echo "$want" >"$stamp"
say "python dependencies installed in $VENV"
