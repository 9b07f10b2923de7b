#!/bin/sh
# Creates (or resets the password of) a Grafana login with the Viewer role, through Grafana's
# HTTP API as the admin. Run once by the grafana-viewer service after Grafana is healthy.
#
# Environment: GRAFANA_URL, GRAFANA_ADMIN_USER, GRAFANA_ADMIN_PASSWORD, GRAFANA_VIEWER_USER,
# GRAFANA_VIEWER_PASSWORD (nothing is done without it). Passwords are sent in request bodies
# or a netrc-style config on stdin, never on a command line that `ps` would show.
set -eu

: "${GRAFANA_URL:?}" "${GRAFANA_ADMIN_USER:?}" "${GRAFANA_ADMIN_PASSWORD:?}" "${GRAFANA_VIEWER_USER:?}"
if [ -z "${GRAFANA_VIEWER_PASSWORD:-}" ]; then
    echo "create-viewer: GRAFANA_VIEWER_PASSWORD is not set; no viewer login created"
    exit 0
fi

# JSON string: escape backslashes and quotes (logins and passwords are single-line).
json() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }

# curl reads the admin credentials and the request body (which may hold the viewer's password)
# from stdin (-K -), so neither is on a command line the process list shows.
api() {
    method="$1" path="$2" body="${3:-}"
    {
        printf 'user = %s\n' "$(json "$GRAFANA_ADMIN_USER:$GRAFANA_ADMIN_PASSWORD")"
        if [ -n "$body" ]; then printf 'data-binary = %s\n' "$(json "$body")"; fi
    } | curl -sS -K - -X "$method" -H 'Content-Type: application/json' -w '\n%{http_code}' "$GRAFANA_URL$path"
}

status_of() { printf '%s' "$1" | tail -n 1; }
body_of() { printf '%s' "$1" | sed '$d'; }

login=$(json "$GRAFANA_VIEWER_USER")
password=$(json "$GRAFANA_VIEWER_PASSWORD")
answer=$(api GET "/api/users/lookup?loginOrEmail=$GRAFANA_VIEWER_USER")
case "$(status_of "$answer")" in
    200)
        id=$(body_of "$answer" | sed -n 's/.*"id":\([0-9][0-9]*\).*/\1/p')
        answer=$(api PUT "/api/admin/users/$id/password" "{\"password\":$password}")
        [ "$(status_of "$answer")" = 200 ] || { echo "create-viewer: password reset failed ($(status_of "$answer"))" >&2; exit 1; }
        answer=$(api PATCH "/api/org/users/$id" '{"role":"Viewer"}')
        echo "create-viewer: reset the password of $GRAFANA_VIEWER_USER (Viewer)"
        ;;
    404)
        answer=$(api POST /api/admin/users "{\"name\":$login,\"login\":$login,\"password\":$password,\"OrgId\":1}")
        [ "$(status_of "$answer")" = 200 ] || { echo "create-viewer: creating the login failed ($(status_of "$answer"))" >&2; exit 1; }
        # New users join the main organisation with Grafana's default role, Viewer.
        echo "create-viewer: created $GRAFANA_VIEWER_USER (Viewer)"
        ;;
    *)
        echo "create-viewer: Grafana answered $(status_of "$answer") to the lookup" >&2
        exit 1
        ;;
esac
