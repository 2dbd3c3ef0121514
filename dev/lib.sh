# shellcheck shell=bash
# Shared helpers for dev/test, dev/demo and dev/update-pot: find (or install) Odoo 18.0, start
# PostgreSQL, find Chromium. Source it; it runs nothing by itself:
#
#     source dev/lib.sh; ensure_postgres; ensure_odoo; odoo_addons_path
#
# Progress goes to stderr. A helper that cannot do its job prints why and returns 1 (scripts run
# with `set -e`, so they stop there).
#
# Environment: PYTHON (the interpreter to use, default python3), FRESHBOOKS_ODOO_HOME (where Odoo
# 18.0 is cloned when it has to be installed), XDG_CACHE_HOME, and the usual PG* variables.

FB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC2034 # used by the scripts that source this file
FB_ADDON=capsule_freshbooks_connector
FB_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/capsule-freshbooks"
FB_ODOO_GIT=https://github.com/odoo/odoo.git
FB_ODOO_BRANCH=18.0

fb_info() { printf '%s\n' "$*" >&2; }
fb_error() { printf 'error: %s\n' "$*" >&2; }
fb_is_root() { [[ $(id -u) -eq 0 ]]; }

# The Python interpreter everything runs with.
fb_python() { printf '%s\n' "${PYTHON:-python3}"; }

# The script that starts Odoo: odoo-bin of a source checkout, else the `odoo` script installed
# beside the interpreter. Not `-m odoo`: the prefork server starts its websocket worker by running
# sys.argv[0] again, which must be a script (odoo/__main__.py alone cannot be run).
odoo_script() {
    "$(fb_python)" - <<'EOF'
import os
import sys

import odoo

root = os.path.dirname(os.path.dirname(os.path.abspath(odoo.__file__)))
for path in (os.path.join(root, "odoo-bin"), os.path.join(os.path.dirname(sys.executable), "odoo")):
    if os.path.isfile(path):
        print(path)
        sys.exit(0)
sys.exit(1)
EOF
}

# The command that runs Odoo, printed; run_odoo runs it.
odoo_cmd() { printf '%s %s\n' "$(fb_python)" "$(odoo_script)"; }
run_odoo() {
    local script
    script=$(odoo_script) || {
        fb_error "found neither odoo-bin nor an odoo script for $(fb_python)"
        return 1
    }
    "$(fb_python)" "$script" "$@"
}

# Runs "$@" as root: directly when we are root, else through sudo without a password prompt.
fb_as_root() {
    if fb_is_root; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        return 1
    fi
}

fb_apt_install() {
    command -v apt-get >/dev/null 2>&1 || return 1
    fb_is_root || { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; } || return 1
    fb_info "Installing with apt-get: $*"
    fb_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || return 1
    fb_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "$@" >&2
}

# --------------------------------------------------------------------------------------------
# PostgreSQL

# Finds a PostgreSQL server program (initdb, pg_ctl, ...): PATH first, then the newest
# /usr/lib/postgresql/<version>/bin.
fb_pg_bin() {
    local name=$1 dir
    if command -v "$name" >/dev/null 2>&1; then
        command -v "$name"
        return 0
    fi
    for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
        if [[ -x $dir/$name ]]; then
            printf '%s\n' "$dir/$name"
            return 0
        fi
    done
    return 1
}

# True when a server answers (whoever we are allowed to be on it).
fb_pg_ready() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q >/dev/null 2>&1
    else
        psql -d postgres -Atqc 'select 1' >/dev/null 2>&1
    fi
}

fb_pg_wait() {
    for _ in {1..30}; do
        fb_pg_ready && return 0
        sleep 1
    done
    return 1
}

# Runs a command as the `postgres` OS user (the superuser of Debian's clusters), connecting as
# that user whatever PGUSER says.
fb_as_postgres() {
    if fb_is_root && command -v runuser >/dev/null 2>&1; then
        runuser -u postgres -- env -u PGUSER "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n -u postgres true 2>/dev/null; then
        sudo -n -u postgres env -u PGUSER "$@"
    else
        return 1
    fi
}

# Starts the clusters Debian's postgresql-common knows about (creating one when there is none).
fb_pg_start_debian_clusters() {
    command -v pg_lsclusters >/dev/null 2>&1 || return 1
    local clusters version name status started=0
    clusters=$(pg_lsclusters -h 2>/dev/null | awk '{print $1, $2, $4}')
    if [[ -z $clusters ]] && command -v pg_createcluster >/dev/null 2>&1; then
        version=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
        version=${version%/bin}
        version=${version##*/}
        [[ -n $version && $version != '*' ]] || return 1
        fb_info "Creating PostgreSQL cluster $version/main"
        fb_as_root pg_createcluster "$version" main >&2 || return 1
        clusters="$version main down"
    fi
    [[ -n $clusters ]] || return 1
    while read -r version name status; do
        [[ $status == online* ]] && continue
        fb_info "Starting PostgreSQL cluster $version/$name"
        if fb_as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start >&2 ||
            fb_as_postgres pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start >&2; then
            started=1
        fi
    done <<<"$clusters"
    # Nothing started (all online yet unreachable with these PG* settings, or no permission).
    ((started)) || return 1
    fb_pg_wait
}

# A private cluster under the cache folder: unix socket only, trust auth, owned by the current
# user. PostgreSQL refuses to run as root, so this is for ordinary users.
fb_pg_start_private() {
    local initdb pg_ctl dir="$FB_CACHE/pg"
    fb_is_root && return 1
    initdb=$(fb_pg_bin initdb) && pg_ctl=$(fb_pg_bin pg_ctl) || return 1
    mkdir -p "$dir/run"
    if [[ ! -f $dir/data/PG_VERSION ]]; then
        fb_info "Creating a private PostgreSQL cluster in $dir"
        rm -rf "$dir/data"
        "$initdb" -D "$dir/data" -A trust -U "$(id -un)" -E UTF8 >"$dir/initdb.log" 2>&1 || {
            fb_error "initdb failed, see $dir/initdb.log"
            return 1
        }
    fi
    export PGHOST="$dir/run"
    fb_pg_ready && return 0
    fb_info "Starting the private PostgreSQL cluster in $dir"
    "$pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
        -o "-k '$dir/run' -c listen_addresses=''" start >&2 || {
        fb_error "the private PostgreSQL cluster did not start, see $dir/postgres.log"
        return 1
    }
    fb_pg_wait
}

# Makes sure the current user has a role that may create databases. Odoo refuses to connect as
# `postgres`, so as root we need a `root` role.
fb_pg_ensure_role() {
    local user out
    user=${PGUSER:-$(id -un)}
    if [[ $user == postgres ]]; then
        fb_error "Odoo refuses to use the PostgreSQL superuser 'postgres': run as another OS user or set PGUSER to a role that can create databases"
        return 1
    fi
    if ! out=$(psql -d postgres -Atqc \
        'select rolcreatedb or rolsuper from pg_roles where rolname = current_user' 2>&1); then
        if [[ $out == *"does not exist"* ]]; then
            fb_info "Creating PostgreSQL role '$user' (CREATEDB)"
            fb_as_postgres createuser -d "$user" >&2 || fb_as_postgres psql -q -d postgres \
                -c "CREATE ROLE \"$user\" LOGIN CREATEDB" >&2 || {
                fb_error "PostgreSQL role '$user' does not exist and could not be created; run: sudo -u postgres createuser -d $user"
                return 1
            }
            return 0
        fi
        fb_error "cannot connect to PostgreSQL as '$user': $out"
        return 1
    fi
    if [[ $out != t ]]; then
        fb_info "Allowing PostgreSQL role '$user' to create databases"
        fb_as_postgres psql -q -d postgres -c "ALTER ROLE \"$user\" CREATEDB" >&2 || {
            fb_error "PostgreSQL role '$user' may not create databases; run: sudo -u postgres psql -c 'ALTER ROLE \"$user\" CREATEDB'"
            return 1
        }
    fi
}

ensure_postgres() {
    if ! fb_pg_ready; then
        if [[ -f $FB_CACHE/pg/data/PG_VERSION ]] && fb_pg_start_private; then
            :
        elif fb_pg_start_debian_clusters; then
            :
        elif fb_pg_start_private; then
            :
        elif ! fb_pg_bin initdb >/dev/null && ! fb_pg_bin postgres >/dev/null &&
            fb_apt_install postgresql && fb_pg_start_debian_clusters; then
            :
        else
            fb_error "PostgreSQL is not running and could not be started. Install PostgreSQL (Debian/Ubuntu: sudo apt-get install postgresql) and start it, or set PGHOST/PGPORT/PGUSER to a running server where you may create databases."
            return 1
        fi
    fi
    if ! command -v psql >/dev/null 2>&1; then
        fb_error "psql (the PostgreSQL client) is missing: install postgresql-client"
        return 1
    fi
    fb_pg_ensure_role
}

# Drops a database if it exists (and its Odoo filestore when a data dir is given).
fb_dropdb() {
    local db=$1 data_dir=${2:-}
    dropdb --if-exists --force "$db" >/dev/null 2>&1 || dropdb --if-exists "$db" >/dev/null 2>&1 || true
    if [[ -n $data_dir && -d $data_dir/filestore/$db ]]; then
        rm -rf "${data_dir:?}/filestore/$db"
    fi
}

fb_db_exists() {
    [[ $(psql -d postgres -Atqc "select 1 from pg_database where datname = '$1'" 2>/dev/null) == 1 ]]
}

# --------------------------------------------------------------------------------------------
# Odoo

fb_has_odoo18() {
    "$1" -c 'import odoo, odoo.release; assert odoo.release.version_info[:2] == (18, 0)' \
        >/dev/null 2>&1
}

# Installs Odoo 18.0 from its official repository into the interpreter $1.
fb_install_odoo_into() {
    local py=$1 home=${FRESHBOOKS_ODOO_HOME:-$FB_CACHE/odoo-18.0} tmp rc=0
    if [[ ! -f $home/odoo/release.py ]]; then
        command -v git >/dev/null 2>&1 || fb_apt_install git ca-certificates || {
            fb_error "git is needed to download Odoo"
            return 1
        }
        fb_info "Cloning Odoo $FB_ODOO_BRANCH from $FB_ODOO_GIT into $home"
        mkdir -p "$(dirname "$home")"
        rm -rf "$home.partial"
        git clone --quiet --depth 1 --branch "$FB_ODOO_BRANCH" "$FB_ODOO_GIT" "$home.partial" >&2 ||
            return 1
        mv "$home.partial" "$home"
    fi
    tmp=$(mktemp -d)
    # python-ldap needs the LDAP headers (only the auth_ldap module uses it); the psycopg2
    # binary wheel needs no compiler.
    grep -v -i '^python-ldap' "$home/requirements.txt" |
        sed -E 's/^psycopg2([ =])/psycopg2-binary\1/' >"$tmp/requirements.txt"
    # Some pinned sdists still import pkg_resources while building.
    printf 'setuptools<70\n' >"$tmp/constraints.txt"
    fb_info "Installing Odoo's requirements with $py -m pip"
    # Then a setuptools whose pkg_resources knows today's normalised distribution names: Odoo's
    # websocket (gevent) worker looks its dependencies up through it, and the old one cannot find
    # 'zope.interface' installed as 'zope_interface'. Still one with pkg_resources (before 80).
    PIP_CONSTRAINT="$tmp/constraints.txt" "$py" -m pip install -q -r "$tmp/requirements.txt" >&2 &&
        PIP_CONSTRAINT="$tmp/constraints.txt" "$py" -m pip install -q --no-deps -e "$home" >&2 &&
        "$py" -m pip install -q 'setuptools>=70,<80' >&2 ||
        rc=1
    rm -rf "$tmp"
    return $rc
}

# Odoo 18.0 and the Python packages the add-on's manifest names (Odoo refuses to install the
# add-on without them).
ensure_odoo() {
    fb_find_or_install_odoo && fb_ensure_addon_requirements "$(fb_python)"
}

# Installs the manifest's external_dependencies that the interpreter $1 lacks (an Odoo found
# ready-made, or installed before the add-on needed them, does not have them all). Their import
# and package names are the same.
fb_ensure_addon_requirements() {
    local py=$1 missing
    missing=$("$py" - "$FB_ROOT/$FB_ADDON/__manifest__.py" <<'EOF'
import ast
import importlib.util
import sys

with open(sys.argv[1]) as manifest:
    names = ast.literal_eval(manifest.read())["external_dependencies"]["python"]
print(" ".join(name for name in names if importlib.util.find_spec(name) is None))
EOF
    ) || {
        fb_error "could not read the add-on's Python dependencies with $py"
        return 1
    }
    [[ -n $missing ]] || return 0
    fb_info "Installing the add-on's Python dependencies ($missing) with $py -m pip"
    # shellcheck disable=SC2086 # one word per package
    "$py" -m pip install -q $missing >&2 || {
        fb_error "could not install $missing with $py -m pip"
        return 1
    }
}

fb_find_or_install_odoo() {
    local py venv="$FB_CACHE/venv"
    py=$(fb_python)
    fb_has_odoo18 "$py" && return 0
    # A previous run may have installed Odoo into our own virtual environment.
    if [[ -z ${PYTHON:-} ]] && fb_has_odoo18 "$venv/bin/python"; then
        export PYTHON="$venv/bin/python"
        return 0
    fi
    if ! command -v "$py" >/dev/null 2>&1; then
        fb_error "Odoo 18.0 could not be found or installed: the Python interpreter '$py' was not found. Install Python 3.10+ and Odoo 18.0 and re-run, or set PYTHON to an interpreter that can import odoo."
        return 1
    fi
    if ! "$py" -c 'import sys; assert sys.version_info >= (3, 10)' >/dev/null 2>&1; then
        fb_error "Odoo 18.0 could not be found or installed: it needs Python 3.10 or later and '$py' is not. Install it and re-run, or set PYTHON to an interpreter that can import odoo."
        return 1
    fi
    fb_info "$py cannot import Odoo 18.0: installing it from $FB_ODOO_GIT (branch $FB_ODOO_BRANCH)"
    # Unless PYTHON names the interpreter to use, keep Odoo's pinned requirements out of the
    # system Python: install into a virtual environment of our own.
    if [[ -z ${PYTHON:-} ]]; then
        if [[ -x $venv/bin/python ]] || "$py" -m venv "$venv" >&2; then
            py="$venv/bin/python"
            export PYTHON="$py"
        else
            fb_info "Could not create a virtual environment; installing into $py itself"
        fi
    fi
    if fb_install_odoo_into "$py" && fb_has_odoo18 "$py"; then
        fb_info "Odoo 18.0 installed for $py"
        return 0
    fi
    fb_error "Odoo 18.0 could not be found or installed: '$py' cannot import it and installing it from $FB_ODOO_GIT failed (see the messages above). Install it and re-run, or set PYTHON to an interpreter that can import odoo."
    return 1
}

# The --addons-path value: Odoo's addons folder next to the odoo package (source checkouts),
# the odoo/addons folder inside it, and this repository (which holds the add-on).
odoo_addons_path() {
    "$(fb_python)" - "$FB_ROOT" <<'EOF'
import os
import sys

import odoo

package = os.path.dirname(os.path.abspath(odoo.__file__))
paths = [os.path.join(os.path.dirname(package), "addons"), os.path.join(package, "addons")]
paths = [path for path in paths if os.path.isdir(path)] + [sys.argv[1]]
print(",".join(paths))
EOF
}

# --------------------------------------------------------------------------------------------
# Test tools

ensure_dev_requirements() {
    local py
    py=$(fb_python)
    if "$py" -c 'import pytest, responses, pytest_odoo, ruff, pylint_odoo, websocket, pkg_resources
pkg_resources.require("gevent")' >/dev/null 2>&1; then
        return 0
    fi
    fb_info "Installing the development tools (requirements-dev.txt) with $py -m pip"
    "$py" -m pip install -q -r "$FB_ROOT/requirements-dev.txt" >&2 || {
        fb_error "could not install requirements-dev.txt with $py -m pip"
        return 1
    }
}

fb_find_chrome() {
    local name
    for name in google-chrome chromium chromium-browser google-chrome-stable; do
        command -v "$name" >/dev/null 2>&1 && return 0
    done
    [[ -x "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome" ||
        -x /Applications/Chromium.app/Contents/MacOS/Chromium ]]
}

# Odoo's tour tests drive a headless Chromium; without one they are skipped, which dev/test
# counts as a failure.
ensure_chromium() {
    fb_find_chrome && return 0
    if fb_apt_install chromium && fb_find_chrome; then
        return 0
    fi
    fb_error "Chromium or Google Chrome is needed for Odoo's browser (tour) tests and none was found on PATH (looked for google-chrome, chromium, chromium-browser). Install one (Debian/Ubuntu: sudo apt-get install chromium) and re-run."
    return 1
}

# A free TCP port on 127.0.0.1.
free_port() {
    "$(fb_python)" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}
