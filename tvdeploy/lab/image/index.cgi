#!/bin/sh
# Every request of the stand-in service. /health checks the config, the secret file and the
# upstream on the data path (edge -> iot_flow -> cloud); /version names service and version.
. /app/service.env
CONFIG_FILE=${CONFIG_FILE:-/etc/trueverit/config}
SECRET_FILE=${SECRET_FILE:-/run/secrets/trueverit}
config=default
if [ -r "$CONFIG_FILE" ]; then . "$CONFIG_FILE"; config=loaded; fi
secret=absent
if [ -s "$SECRET_FILE" ]; then secret=present; fi

reply() {
  printf 'HTTP/1.1 %s\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n%s\n' "$1" "$2"
}

case "$REQUEST_URI" in
  /version*)
    reply "200 OK" "{\"service\":\"$SERVICE\",\"version\":\"$VERSION\"}"
    ;;
  /health*)
    problem=""
    if [ "$BROKEN" = 1 ]; then problem="this build fails its health check on purpose"; fi
    if [ -z "$problem" ] && [ "$REQUIRE_SECRET" = 1 ] && [ "$secret" != present ]; then
      problem="secret file $SECRET_FILE missing or empty"
    fi
    upstream_json=null
    if [ -z "$problem" ] && [ -n "$UPSTREAM" ]; then
      # (busybox 1.35 wget segfaults with -T: bound it with timeout instead)
      if body=$(timeout 3 wget -q -O- "http://$UPSTREAM/health/" 2>/dev/null); then
        upstream_json=$body
      else
        problem="upstream $UPSTREAM is not healthy"
      fi
    fi
    fields="\"service\":\"$SERVICE\",\"version\":\"$VERSION\",\"config\":\"$config\",\"secret\":\"$secret\",\"upstream\":$upstream_json"
    if [ -z "$problem" ]; then
      reply "200 OK" "{\"status\":\"ok\",$fields}"
    else
      reply "503 Service Unavailable" "{\"status\":\"fail\",\"problem\":\"$problem\",$fields}"
    fi
    ;;
  *)
    reply "404 Not Found" "{\"error\":\"not found\"}"
    ;;
esac
