#!/bin/sh
# Generate (or rotate) runnerguard's Redis password. Redis gets only its SHA-256, as the ACL user `runnerguard`
# in AUTH_FILE (mode 0600, owned by the redis user where there is one), which deploy/redis.conf includes; the central
# tier (web, worker, scheduler) gets REDIS_URL in ENV_FILE (mode 0600). Never give a runner host this URL.
# Usage (as root): sh deploy/redis-password.sh [AUTH_FILE [ENV_FILE [HOST:PORT]]]
# Defaults: /etc/runnerguard/redis-auth.conf /etc/runnerguard/env 127.0.0.1:6379. Then restart redis-server and
# the runnerguard units.
set -eu

auth_file=${1:-/etc/runnerguard/redis-auth.conf}
env_file=${2:-/etc/runnerguard/env}
address=${3:-127.0.0.1:6379}

for dir in "$(dirname "$auth_file")" "$(dirname "$env_file")"; do
    # 0755: the redis user must reach its file in there; each file inside stays 0600.
    [ -d "$dir" ] || mkdir -p -m 0755 "$dir"
done
umask 077
# 32 random bytes as hex: nothing in it needs escaping in a URL or a config line.
secret=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
hash=$(printf %s "$secret" | sha256sum | cut -d' ' -f1)

# ~* &* +@all: every key, channel and command; runnerguard's RQ workers use CLIENT LIST and SETNAME, which
# a narrower -@dangerous would refuse.
printf 'user runnerguard on #%s ~* &* +@all\n' "$hash" > "$auth_file.tmp"
if [ "$(id -u)" -eq 0 ] && id redis >/dev/null 2>&1; then
    chown redis:redis "$auth_file.tmp"
fi
mv "$auth_file.tmp" "$auth_file"

touch "$env_file"
{ grep -v '^REDIS_URL=' "$env_file" || true; echo "REDIS_URL=redis://runnerguard:$secret@$address/0"; } > "$env_file.tmp"
chmod 0600 "$env_file.tmp"
mv "$env_file.tmp" "$env_file"
echo "redis-password: wrote $auth_file and REDIS_URL in $env_file; restart redis-server, then the runnerguard units"
