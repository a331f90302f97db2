#!/usr/bin/env bash
# Makes sure the non-English locale the locale tests use (tests/locale.rs) is
# on this machine: Debian's `locales` with de_DE.UTF-8 generated, and
# PostgreSQL's German message catalogue (shipped with the server package).
# Idempotent; fails loudly.
set -euo pipefail

log() { echo "locales: $*" >&2; }
die() { echo "locales: ERROR: $*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

LOCALE=de_DE.UTF-8

if ! dpkg -s locales >/dev/null 2>&1; then
  log "installing locales"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq locales >/dev/null
fi

if ! locale -a 2>/dev/null | grep -qi '^de_DE\.utf-\?8$'; then
  log "generating $LOCALE"
  if grep -q "^# *$LOCALE UTF-8" /etc/locale.gen; then
    as_root sed -i "s/^# *$LOCALE UTF-8/$LOCALE UTF-8/" /etc/locale.gen
  elif ! grep -q "^$LOCALE UTF-8" /etc/locale.gen; then
    echo "$LOCALE UTF-8" | as_root tee -a /etc/locale.gen >/dev/null
  fi
  as_root locale-gen >/dev/null
  locale -a 2>/dev/null | grep -qi '^de_DE\.utf-\?8$' || die "$LOCALE could not be generated"
fi

# Also as a directory (/usr/lib/locale/de_DE.utf8): a server started before
# the locale was generated keeps the old locale archive mapped (glibc caches
# it per process, and backends inherit it from the postmaster), but finds a
# directory locale; no server restart is needed.
if [ ! -d /usr/lib/locale/de_DE.utf8 ]; then
  log "compiling $LOCALE as a directory locale"
  as_root localedef --no-archive -i de_DE -c -f UTF-8 "$LOCALE" || die "localedef $LOCALE failed"
fi

# PostgreSQL translates its messages only if its catalogue is installed.
ls /usr/share/locale/de/LC_MESSAGES/postgres-*.mo >/dev/null 2>&1 \
  || die "PostgreSQL's German messages (/usr/share/locale/de/LC_MESSAGES/postgres-*.mo) are missing"
log "$LOCALE and PostgreSQL's German messages are present"
