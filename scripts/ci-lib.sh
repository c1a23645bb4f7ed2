# shellcheck shell=bash
# The common start of scripts/ci-*.sh, sourced with the test's name and why it needs root:
#   source "$repo/scripts/ci-lib.sh" ci-pack "it installs from the npm registry"
# Not root: one line saying the test was skipped and why, exit 0. Then say, fail, t0 and apt_install.
ci_name=$1
if [ "$(id -u)" -ne 0 ]; then
  echo "$ci_name: skipped: not root ($2)"
  exit 0
fi
say() { echo "$ci_name: $*"; }
fail() {
  echo "$ci_name: FAIL: $*" >&2
  exit 1
}
# shellcheck disable=SC2034 # read by the sourcing script
t0=$SECONDS
# apt_install COMMAND PACKAGE...: install Debian's packages unless COMMAND is there, refreshing the package
# lists only when the first try fails (a fresh machine may have none).
apt_install() {
  command -v "$1" >/dev/null && return
  shift
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "$@" >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q "$@" >/dev/null; }
}
