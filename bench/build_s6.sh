#!/bin/sh
# Builds s6-networking's s6-tcpserver (and s6's s6-accessrules-cdb-from-fs,
# for the rules row) from local checkouts, for bench/ (see bench/README.md).
# Downloads nothing: every source tree is given.
#
#   bench/build_s6.sh [--prefix DIR] CHECKOUT...
#
# Each CHECKOUT is a source tree of skalibs, s6-dns, s6, s6-networking and,
# optionally, execline, recognised by its package/info; or set SKALIBS_SRC,
# S6DNS_SRC, S6_SRC, S6NET_SRC (and EXECLINE_SRC). The prefix (default
# $S6_PREFIX, else /opt/s6) gets bin/, lib/ (static libraries only), include/;
# the binaries are linked against the static skarnet libraries, so they need
# only libc. Each tree is copied to a scratch directory and built there: the
# checkouts stay clean. Then:
#
#   S6_TCPSERVER=DIR/bin/s6-tcpserver deno task bench
set -eu

prefix=${S6_PREFIX:-/opt/s6}
skalibs=${SKALIBS_SRC:-}
execline=${EXECLINE_SRC:-}
s6=${S6_SRC:-}
s6dns=${S6DNS_SRC:-}
s6net=${S6NET_SRC:-}

die() {
  echo "build_s6.sh: $*" >&2
  exit 100
}

while [ $# -gt 0 ]; do
  case $1 in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#--prefix=}; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    -*) die "unknown option $1" ;;
    *)
      [ -f "$1/package/info" ] || die "$1: no package/info (not a skarnet.org source tree)"
      name=$(sed -n 's/^package=//p' "$1/package/info")
      case $name in
        skalibs) skalibs=$1 ;;
        execline) execline=$1 ;;
        s6) s6=$1 ;;
        s6-dns) s6dns=$1 ;;
        s6-networking) s6net=$1 ;;
        *) die "$1: package $name is not needed here" ;;
      esac
      shift ;;
  esac
done

for v in skalibs s6dns s6 s6net; do
  eval "d=\$$v"
  [ -n "$d" ] || die "no $v checkout (give its directory, or set the variable; see --help)"
  [ -f "$d/configure" ] || die "$d: no configure"
done
case $prefix in /*) ;; *) prefix=$(pwd)/$prefix ;; esac

scratch=$(mktemp -d "${TMPDIR:-/tmp}/build_s6.XXXXXX")
trap 'rm -rf "$scratch"' EXIT INT TERM
jobs=$(nproc 2>/dev/null || echo 1)

# build NAME SRC CONFIGURE-ARGS...: copy, configure against $prefix, make, install
build() {
  name=$1 src=$2
  shift 2
  echo "== $name ($(sed -n 's/^version=//p' "$src/package/info")) from $src"
  cp -a "$src" "$scratch/$name"
  (
    cd "$scratch/$name"
    ./configure --prefix="$prefix" --disable-shared "$@"
    make -j"$jobs"
    make install
  )
}

deps="--with-sysdeps=$prefix/lib/skalibs/sysdeps --with-include=$prefix/include --with-lib=$prefix/lib"
build skalibs "$skalibs"
if [ -n "$execline" ]; then
  build execline "$execline" $deps
  exl=
else
  exl=--disable-execline
fi
# shellcheck disable=SC2086 # $deps and $exl are lists of words
build s6 "$s6" $deps $exl
# shellcheck disable=SC2086
build s6-dns "$s6dns" $deps
# shellcheck disable=SC2086
build s6-networking "$s6net" $deps $exl

for p in s6-tcpserver s6-tcpserverd s6-tcpserver-access s6-accessrules-cdb-from-fs; do
  [ -x "$prefix/bin/$p" ] || die "$prefix/bin/$p was not built"
done
echo "built: S6_TCPSERVER=$prefix/bin/s6-tcpserver"
