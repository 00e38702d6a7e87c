#!/bin/sh
# Stand-in Trueverit service: /health and /version over HTTP on $PORT (busybox httpd + CGI).
# Identity in /app/service.env; settings in $CONFIG_FILE (KEY=VALUE lines, optional).
. /app/service.env
CONFIG_FILE=${CONFIG_FILE:-/etc/trueverit/config}
if [ -r "$CONFIG_FILE" ]; then . "$CONFIG_FILE"; fi
echo "trueverit $SERVICE $VERSION listening on :${PORT:-8080}"
exec /bin/httpd -f -p "${PORT:-8080}" -h /www
