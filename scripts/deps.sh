#!/bin/sh
# deps.sh — installs the Debian packages longcat.c needs (when run as root), or prints the
# apt-get command to run (otherwise). Usage: scripts/deps.sh build|test
set -u
build_pkgs="gcc make libc6-dev libcjson-dev libpcre2-dev libutf8proc-dev libopenblas-dev libmicrohttpd-dev"
test_pkgs="$build_pkgs clang libclang-rt-dev libomp-dev"
case "${1:-build}" in
  build) pkgs=$build_pkgs ;;
  test)  pkgs=$test_pkgs ;;
  *) echo "usage: $0 build|test" >&2; exit 2 ;;
esac
if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "deps: not a Debian system; make sure these (or equivalents) are installed: $pkgs" >&2
  exit 0
fi
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "deps: installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq $missing >/dev/null || { echo "deps: apt-get install failed" >&2; exit 1; }
else
  echo "deps: missing Debian packages:$missing" >&2
  echo "deps: run:  sudo apt-get install -y$missing" >&2
  exit 1
fi
