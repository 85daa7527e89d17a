#!/usr/bin/env bash
# Sets up graceful on a fresh machine: Python 3.10 venv in .venv, the pinned TFX 1.16 stack, this
# package (editable, so `schemas/` and the components are found), and the Fashion-MNIST data package.
# Idempotent: a second run only checks. Extras: GRACEFUL_EXTRAS="test,kubeflow,airflow,benchmarks"
# (test, the default, includes the benchmarks' mnist1d).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${GRACEFUL_EXTRAS:-test}"

find_python310() {
  for candidate in "${PYTHON:-}" python3.10 "$(pyenv prefix 3.10 2>/dev/null)/bin/python3.10" \
                   "$HOME"/.pyenv/versions/3.10*/bin/python3.10 /usr/bin/python3.10; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
      command -v "$candidate"; return 0
    fi
  done
  return 1
}

if [ ! -x .venv/bin/python ]; then
  if ! PY=$(find_python310); then
    echo "setup: Python 3.10 not found. TFX 1.16 (the newest TFX that runs on glibc < 2.38) needs it." >&2
    echo "setup: install it (e.g. 'pyenv install 3.10' or 'apt-get install python3.10') or set PYTHON=/path/to/python3.10." >&2
    exit 1
  fi
  echo "setup: creating .venv with $PY"
  "$PY" -m venv .venv
fi

stamp=".venv/.graceful-installed"
want="$(cat constraints.txt setup.py | sha256sum | cut -c1-16)-$EXTRAS"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  start=$(date +%s)
  echo "setup: installing the pinned stack into .venv (extras: $EXTRAS); takes about a minute"
  .venv/bin/python -m pip install -q --disable-pip-version-check 'uv==0.13.9' 'setuptools<81'
  # uv resolves the 300+ pins in seconds; pip (kept in the venv: TFX's Trainer may pip-install user
  # code) is the fallback.
  if ! .venv/bin/python -m uv pip install -q --python .venv/bin/python -c constraints.txt -e ".[$EXTRAS]"; then
    echo "setup: uv failed, falling back to pip"
    .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[$EXTRAS]"
  fi
  echo "$want" > "$stamp"
  echo "setup: stack installed in $(( $(date +%s) - start ))s"
fi

can_apt() { command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; }
apt_updated=""
apt_install() {  # apt_install PACKAGE WHY
  echo "setup: installing Debian's $1 ($2)"
  [ -n "$apt_updated" ] || { apt-get update -qq >/dev/null; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$1" >/dev/null
}

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -z "${GRACEFUL_FASHION_MNIST_DIR:-}" ]; then
  if can_apt; then
    apt_install dataset-fashion-mnist "the embedded default data"
  else
    echo "setup: Fashion-MNIST not found. Run 'sudo apt-get install dataset-fashion-mnist' or set" >&2
    echo "setup: GRACEFUL_FASHION_MNIST_DIR to a folder with the four *-ubyte.gz files." >&2
  fi
fi
if ! command -v chromium >/dev/null 2>&1; then
  if can_apt; then
    apt_install chromium "headless browser: the tests render the flip report in it"
  else
    echo "setup: chromium not found; the flip-report rendering test will be skipped" >&2
    echo "setup: ('sudo apt-get install chromium' to run it)." >&2
  fi
fi
# The tests run ML Metadata and the sign-off decisions on a real MariaDB server, which they start
# themselves (tests/mariadb.py: a throwaway mariadbd on a temporary data directory); they need only
# the binaries.
if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
  if can_apt; then
    apt_install mariadb-server "the tests start a throwaway MariaDB server for ML Metadata on MySQL"
  else
    echo "setup: mariadbd not found; the ML Metadata on MySQL/MariaDB tests fail without it." >&2
    echo "setup: install it with 'sudo apt-get install mariadb-server' (the tests start their own" >&2
    echo "setup: server on a free port; none needs to be running)." >&2
  fi
fi
echo "setup: ready (.venv/bin/graceful)"
