#!/usr/bin/env bash
# Installs the Debian packages the tests and `make stack` run for real: Prometheus (with promtool),
# Alertmanager (with amtool), Chromium and redis-server (the shared rate-limiter tests and bench).
# Does nothing when they are already there.
set -euo pipefail
need=()
command -v prometheus >/dev/null || need+=(prometheus)
command -v promtool >/dev/null || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
command -v amtool >/dev/null || need+=(prometheus-alertmanager)
command -v chromium >/dev/null || need+=(chromium)
command -v redis-server >/dev/null || need+=(redis-server)
[ ${#need[@]} -eq 0 ] && exit 0
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${need[*]}; run: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts the packaged services; the tests start their own on free ports.
for service in prometheus prometheus-alertmanager prometheus-node-exporter redis-server; do
  (command -v systemctl >/dev/null && systemctl stop "$service" 2>/dev/null) ||
    (command -v service >/dev/null && service "$service" stop >/dev/null 2>&1) || true
done
