# shellcheck shell=bash
# Shared install step for ifcbfs's scripts; source it, do not run it:
#
#     set -euo pipefail
#     source "$(dirname "$0")/lib/setup.sh"
#
# Makes sure the system packages, /dev/fuse and the project's virtualenv
# (.venv at the repository root, with `pip install -e '.[test,products,s3]'`) are in place.
# Every step is skipped when its result is already there, so a second run takes
# well under a second. Prints one line per step; when a step fails, its full
# output is shown and sourcing returns non-zero.
#
# Exports IFCBFS_ROOT (repository root), IFCBFS_VENV (the virtualenv) and puts
# "$IFCBFS_VENV/bin" first in PATH.
#
# Knobs (environment, or shell variables set before sourcing):
#   IFCBFS_PYTHON       interpreter used to create .venv (default: python3 on
#                       PATH if usable, else /usr/bin/python3)
#   IFCBFS_SKIP_APT=1   do not check or install Debian packages
#   IFCBFS_SETUP_STEPS=system
#                       only the system packages and /dev/fuse (scripts/install
#                       makes a virtualenv of its own); no .venv, PATH unchanged

IFCBFS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
IFCBFS_VENV="$IFCBFS_ROOT/.venv"
export IFCBFS_ROOT IFCBFS_VENV

# Debian packages needed to build pyfuse3, mount, and run the tests.
# systemd provides systemd-analyze (used to check the unit files); unzip tests the zips.
_ifcbfs_apt_packages=(fuse3 libfuse3-dev pkg-config python3-venv python3-dev gcc rsync pngcheck unzip systemd)

_ifcbfs_say() { printf 'setup: %s\n' "$*" >&2; }

# _ifcbfs_run DESCRIPTION CMD...: run CMD quietly; on failure show its output.
_ifcbfs_run() {
    local what="$1" log rc=0
    shift
    log="$(mktemp "${TMPDIR:-/tmp}/ifcbfs-setup.XXXXXX")"
    "$@" </dev/null >"$log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        _ifcbfs_say "FAILED: $what (exit $rc)"
        sed 's/^/    /' "$log" >&2
        rm -f "$log"
        return "$rc"
    fi
    rm -f "$log"
}

# Run as root: directly when we are root, through sudo otherwise.
_ifcbfs_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "need root for: $* (not root, and sudo is not installed)" >&2
        return 1
    fi
}

_ifcbfs_setup_apt() {
    if [ "${IFCBFS_SKIP_APT:-0}" = 1 ]; then
        _ifcbfs_say "system packages: not checked (IFCBFS_SKIP_APT=1)"
        return 0
    fi
    if ! command -v dpkg-query >/dev/null 2>&1; then
        _ifcbfs_say "system packages: not a Debian system; install these yourself: ${_ifcbfs_apt_packages[*]}"
        return 0
    fi
    local missing=() pkg status
    for pkg in "${_ifcbfs_apt_packages[@]}"; do
        status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
        [ "$status" = "install ok installed" ] || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        _ifcbfs_say "system packages: present"
        return 0
    fi
    if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
        _ifcbfs_say "FAILED: missing system packages: ${missing[*]}"
        _ifcbfs_say "        not root and sudo is not installed; as root run:"
        _ifcbfs_say "        apt-get update && apt-get install -y ${missing[*]}"
        return 1
    fi
    _ifcbfs_say "system packages: installing ${missing[*]}"
    _ifcbfs_run "apt-get update" \
        _ifcbfs_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q || return
    _ifcbfs_run "apt-get install ${missing[*]}" \
        _ifcbfs_as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}" || return
    if ! command -v systemd-analyze >/dev/null 2>&1; then
        _ifcbfs_say "warning: systemd-analyze still not on PATH after installing systemd"
    fi
}

_ifcbfs_setup_fuse() {
    if [ -c /dev/fuse ]; then
        _ifcbfs_say "/dev/fuse: present"
        return 0
    fi
    if [ "$(id -u)" -eq 0 ]; then
        modprobe fuse >/dev/null 2>&1 || true
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n modprobe fuse >/dev/null 2>&1 || true   # never prompt for this
    fi
    if [ -c /dev/fuse ]; then
        _ifcbfs_say "/dev/fuse: loaded the fuse module"
    else
        _ifcbfs_say "WARNING: /dev/fuse is missing (and 'modprobe fuse' did not help):"
        _ifcbfs_say "         real mounts will not work and mount tests will be skipped."
        _ifcbfs_say "         In a container, start it with --device /dev/fuse --cap-add SYS_ADMIN."
    fi
    return 0
}

# Print the interpreter to create .venv with. Prefer one that has the C headers
# (pyfuse3 is compiled from source), then any usable one.
_ifcbfs_pick_python() {
    local cand need_headers
    local check='import sys, venv, ensurepip; assert sys.version_info >= (3, 9)'
    local headers='import os, sysconfig; assert os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))'
    for need_headers in 1 0; do
        for cand in ${IFCBFS_PYTHON:+"$IFCBFS_PYTHON"} python3 /usr/bin/python3; do
            command -v "$cand" >/dev/null 2>&1 || continue
            "$cand" -c "$check" >/dev/null 2>&1 || continue
            if [ "$need_headers" = 1 ]; then
                "$cand" -c "$headers" >/dev/null 2>&1 || continue
            fi
            command -v "$cand"
            return 0
        done
    done
    return 1
}

_ifcbfs_setup_venv() {
    local py="$IFCBFS_VENV/bin/python"
    local ver
    if [ -d "$IFCBFS_VENV" ]; then
        if ver="$("$py" -c 'import sys, platform; print(platform.python_version()); sys.exit(sys.version_info < (3, 9))' 2>/dev/null)"; then
            _ifcbfs_say "virtualenv: $IFCBFS_VENV ($ver)"
        else
            _ifcbfs_say "virtualenv: $IFCBFS_VENV is broken (its interpreter does not run); recreating it"
            rm -rf "$IFCBFS_VENV"
        fi
    fi
    if [ ! -d "$IFCBFS_VENV" ]; then
        local base
        if ! base="$(_ifcbfs_pick_python)"; then
            _ifcbfs_say "FAILED: no Python >= 3.9 with the venv and ensurepip modules (tried ${IFCBFS_PYTHON:+$IFCBFS_PYTHON, }python3, /usr/bin/python3)"
            return 1
        fi
        _ifcbfs_say "virtualenv: creating $IFCBFS_VENV with $base ($("$base" -c 'import platform; print(platform.python_version())'))"
        _ifcbfs_run "create virtualenv" "$base" -m venv "$IFCBFS_VENV" || return
    fi
    if ! [ -x "$IFCBFS_VENV/bin/pip" ] && ! "$py" -m pip --version >/dev/null 2>&1; then
        _ifcbfs_run "install pip into the virtualenv" "$py" -m ensurepip --upgrade || return
    fi
}

# The extras installed with the project: the tests, the readers of product files, object storage.
_ifcbfs_extras="test,products,s3"

_ifcbfs_setup_install() {
    local stamp="$IFCBFS_VENV/.ifcbfs-install-stamp" want have=""
    # The stamp names the extras too, so installing another set is not taken as up to date.
    want="$(sha256sum "$IFCBFS_ROOT/pyproject.toml" | cut -d' ' -f1) [$_ifcbfs_extras]"
    [ -f "$stamp" ] && have="$(cat "$stamp")"
    if [ "$want" = "$have" ] && [ -x "$IFCBFS_VENV/bin/ifcbfs" ]; then
        _ifcbfs_say "python packages: up to date"
        return 0
    fi
    _ifcbfs_say "python packages: pip install -e '.[$_ifcbfs_extras]' (pyproject.toml or extras changed, or never installed)"
    rm -f "$stamp"
    _ifcbfs_run "pip install -e '.[$_ifcbfs_extras]'" \
        env PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
        "$IFCBFS_VENV/bin/python" -m pip install -e "${IFCBFS_ROOT}[$_ifcbfs_extras]" || return
    printf '%s\n' "$want" >"$stamp"
}

_ifcbfs_setup() {
    local lock_fd="" rc=0
    # Serialise concurrent runs (two scripts started at once would otherwise
    # race on apt and pip). The lock is taken on this file itself.
    if command -v flock >/dev/null 2>&1 && exec {lock_fd}<"${BASH_SOURCE[0]}"; then
        flock -w 900 "$lock_fd" || true
    fi
    if [ "${IFCBFS_SETUP_STEPS:-all}" = system ]; then
        { _ifcbfs_setup_apt && _ifcbfs_setup_fuse; } || rc=$?
    else
        { _ifcbfs_setup_apt && _ifcbfs_setup_fuse && _ifcbfs_setup_venv && _ifcbfs_setup_install; } || rc=$?
    fi
    if [ -n "$lock_fd" ]; then
        exec {lock_fd}<&-
    fi
    return "$rc"
}

if ! _ifcbfs_setup; then
    _ifcbfs_say "setup failed; see above"
    return 1
elif [ "${IFCBFS_SETUP_STEPS:-all}" != system ]; then
    case ":$PATH:" in
        "$IFCBFS_VENV/bin:"*) ;;
        *) PATH="$IFCBFS_VENV/bin:$PATH" ;;
    esac
    export PATH
    unset PYTHONHOME
fi
