#!/bin/sh
# Alertmanager cannot read its receivers from the environment, so this writes its configuration
# from the environment at every start, then runs the rest of its arguments (Alertmanager).
#
#   render-config.sh OUT [command ...]
#
# The first receiver whose settings are present gets every alert:
#   ALERT_SLACK_WEBHOOK_URL [ALERT_SLACK_CHANNEL]       a Slack (or Mattermost) incoming webhook
#   ALERT_WEBHOOK_URL                                   any receiver of Alertmanager's webhook JSON
#                                                       (Teams and others through their adapters)
#   ALERT_EMAIL_TO ALERT_EMAIL_FROM ALERT_SMTP_SMARTHOST [ALERT_SMTP_USERNAME ALERT_SMTP_PASSWORD]
#                                                       e-mail; ALERT_SMTP_REQUIRE_TLS [true]
# With none of them, alerts go to ALERT_LOG_URL [http://alert-log:8080/], the alert-log
# service, which prints them to its log.
#
# POSIX sh: the Alertmanager image has busybox, no bash. The file holds secrets (webhook URLs,
# the SMTP password): it is written with mode 600 and never printed.
set -eu

out="${1:?usage: render-config.sh OUT [command ...]}"
shift

# A YAML single-quoted scalar: only ' needs escaping, by doubling it.
q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }

receiver_block() {
    if [ -n "${ALERT_SLACK_WEBHOOK_URL:-}" ]; then
        echo "    slack_configs:"
        echo "      - api_url: $(q "$ALERT_SLACK_WEBHOOK_URL")"
        [ -n "${ALERT_SLACK_CHANNEL:-}" ] && echo "        channel: $(q "$ALERT_SLACK_CHANNEL")"
        echo "        send_resolved: true"
        echo "        title: '{{ .Status | toUpper }}: {{ .CommonLabels.alertname }}'"
        echo "        text: '{{ range .Alerts }}- {{ .Annotations.summary }} ({{ .Annotations.runbook }}) {{ end }}'"
        echo "slack" >&3
    elif [ -n "${ALERT_WEBHOOK_URL:-}" ]; then
        echo "    webhook_configs:"
        echo "      - url: $(q "$ALERT_WEBHOOK_URL")"
        echo "        send_resolved: true"
        echo "webhook" >&3
    elif [ -n "${ALERT_EMAIL_TO:-}" ]; then
        : "${ALERT_EMAIL_FROM:?ALERT_EMAIL_TO needs ALERT_EMAIL_FROM}"
        : "${ALERT_SMTP_SMARTHOST:?ALERT_EMAIL_TO needs ALERT_SMTP_SMARTHOST (host:port)}"
        echo "    email_configs:"
        echo "      - to: $(q "$ALERT_EMAIL_TO")"
        echo "        from: $(q "$ALERT_EMAIL_FROM")"
        echo "        smarthost: $(q "$ALERT_SMTP_SMARTHOST")"
        if [ -n "${ALERT_SMTP_USERNAME:-}" ]; then
            echo "        auth_username: $(q "$ALERT_SMTP_USERNAME")"
            echo "        auth_password: $(q "${ALERT_SMTP_PASSWORD:-}")"
        fi
        echo "        require_tls: ${ALERT_SMTP_REQUIRE_TLS:-true}"
        echo "        send_resolved: true"
        echo "email" >&3
    else
        echo "    webhook_configs:"
        echo "      - url: $(q "${ALERT_LOG_URL:-http://alert-log:8080/}")"
        echo "        send_resolved: true"
        echo "log" >&3
    fi
}

umask 077
{
    echo "# Written by render-config.sh at every start of Alertmanager; edit the script, not this."
    echo "route:"
    echo "  receiver: team"
    echo "  group_by: [alertname, command, instance]"
    echo "  group_wait: ${ALERT_GROUP_WAIT:-30s}"
    echo "  group_interval: 5m"
    echo "  repeat_interval: 12h"
    echo "inhibit_rules:"
    echo "  # While the database is down, the runs that fail because of it say nothing new."
    echo "  - source_matchers: [alertname=\"DatabaseDown\"]"
    echo "    target_matchers: [alertname=~\"FitpipeRunFailed|FitpipeParticipants.*\"]"
    echo "receivers:"
    echo "  - name: team"
    receiver_block
} > "$out.tmp" 3> "$out.kind"
mv "$out.tmp" "$out"
echo "render-config: alerts go to the $(cat "$out.kind") receiver" >&2
rm -f "$out.kind"

if [ "$#" -gt 0 ]; then exec "$@"; fi
