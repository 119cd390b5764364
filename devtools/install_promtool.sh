#!/bin/sh
# promtool (Debian's prometheus package) for the deploy/ tests: `promtool check rules` and `promtool test rules` on
# deploy/prometheus/, and the parse check of the Grafana dashboard's queries (tests/test_deploy_monitoring.py).
# Idempotent and quiet, like install_browser.sh; unpacked into ./var/tools/bin, the package is not installed
# (that would start a Prometheus server). Without it the rule tests skip and say why.
set -eu
exec sh "$(dirname "$0")/fetch_deb_tool.sh" prometheus promtool
