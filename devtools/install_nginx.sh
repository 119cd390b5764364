#!/bin/sh
# nginx (Debian's nginx package) for `nginx -t` on deploy/nginx.conf.example (tests/test_deploy_nginx.py).
# Idempotent and quiet, like install_browser.sh; unpacked into ./var/tools/bin, the package is not installed
# (that would start nginx on port 80). Without it the nginx test skips and says why.
set -eu
exec sh "$(dirname "$0")/fetch_deb_tool.sh" nginx nginx
