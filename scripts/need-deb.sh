#!/usr/bin/env bash
# Makes sure COMMAND exists, installing the Debian PACKAGES that provide it
# when we are root with apt-get; otherwise says what to install.
#
#   scripts/need-deb.sh COMMAND PACKAGE... 
set -euo pipefail
command="${1:?usage: scripts/need-deb.sh COMMAND PACKAGE...}"
shift
command -v "$command" >/dev/null && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing $* (for $command)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
else
    echo "$command is needed: install the Debian package(s) $*" >&2
    exit 1
fi
