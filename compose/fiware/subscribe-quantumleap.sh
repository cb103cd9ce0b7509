#!/bin/sh
# One-shot start-up job of the FIWARE stack: make sure Orion-LD holds the
# subscription that sends every change of the platform's entity types to
# QuantumLeap, once per tenant. Idempotent: the subscription has a fixed id;
# GET it first, create it (POST) when absent, bring it up to date (PATCH) when
# present, so running this again, or after changing a variable, converges
# instead of duplicating. POSIX sh + curl only (runs in the curl image).
#
# Variables (compose/README.md):
#   ORION_URL                    http://orion:1026
#   QUANTUMLEAP_NOTIFY_URL       http://quantumleap:8668/v2/notify
#   QUANTUMLEAP_SUBSCRIPTION_ID  urn:ngsi-ld:Subscription:metropole-quantumleap
#   QUANTUMLEAP_ENTITY_TYPES     AirQualityObserved,NoiseLevelObserved,WeatherObserved,Device
#   QUANTUMLEAP_TENANTS          comma-separated NGSI-LD tenants; empty = the default tenant
#   SUBSCRIPTION_CONTEXT         @context the type names are expanded with (Link header)
#   SUBSCRIPTION_WAIT_SECONDS    how long to wait for Orion-LD to answer (120)
set -eu

ORION_URL=${ORION_URL:-http://orion:1026}
QUANTUMLEAP_NOTIFY_URL=${QUANTUMLEAP_NOTIFY_URL:-http://quantumleap:8668/v2/notify}
QUANTUMLEAP_SUBSCRIPTION_ID=${QUANTUMLEAP_SUBSCRIPTION_ID:-urn:ngsi-ld:Subscription:metropole-quantumleap}
QUANTUMLEAP_ENTITY_TYPES=${QUANTUMLEAP_ENTITY_TYPES:-AirQualityObserved,NoiseLevelObserved,WeatherObserved,Device}
QUANTUMLEAP_TENANTS=${QUANTUMLEAP_TENANTS:-}
SUBSCRIPTION_CONTEXT=${SUBSCRIPTION_CONTEXT:-https://smartdatamodels.org/context.jsonld}
SUBSCRIPTION_WAIT_SECONDS=${SUBSCRIPTION_WAIT_SECONDS:-120}

API="$ORION_URL/ngsi-ld/v1/subscriptions"
LINK="<$SUBSCRIPTION_CONTEXT>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\""
BODY_FILE=${TMPDIR:-/tmp}/subscription.$$.json
RESPONSE_FILE=${TMPDIR:-/tmp}/response.$$.json
trap 'rm -f "$BODY_FILE" "$RESPONSE_FILE"' EXIT

log() { echo "subscribe-quantumleap: $*"; }

# [{"type":"A"},{"type":"B"}] from A,B (type names are NGSI-LD names: no quotes to escape)
entities_json() {
    printf '%s' "$QUANTUMLEAP_ENTITY_TYPES" | tr ',' '\n' | sed -e 's/^ *//' -e 's/ *$//' -e '/^$/d' \
        | sed -e 's/.*/{"type":"&"}/' | paste -s -d ',' - | sed -e 's/^/[/' -e 's/$/]/'
}

# The subscription's members; $1 = the tenant (empty for the default tenant).
# QuantumLeap files notifications under the Fiware-Service header, so the
# tenant travels to it as receiverInfo (NGSI-LD 5.2.15).
write_body() {
    receiver=""
    if [ -n "$1" ]; then
        receiver=",\"receiverInfo\":[{\"key\":\"Fiware-Service\",\"value\":\"$1\"}]"
    fi
    cat >"$BODY_FILE" <<JSON
{"type":"Subscription",
 "description":"metropole: every change of the platform's entity types, to QuantumLeap (history)",
 "entities":$(entities_json),
 "notification":{"format":"normalized",
                 "endpoint":{"uri":"$QUANTUMLEAP_NOTIFY_URL","accept":"application/json"$receiver}}}
JSON
}

# $1 = method, $2 = URL, $3 = tenant, $4 = body file or empty; prints the HTTP status
request() {
    set -- "$1" "$2" "$3" "${4:-}"
    if [ -n "$3" ] && [ -n "$4" ]; then
        curl -sS -o "$RESPONSE_FILE" -w '%{http_code}' -X "$1" "$2" -H "NGSILD-Tenant: $3" \
             -H 'Content-Type: application/json' -H "Link: $LINK" --data-binary "@$4"
    elif [ -n "$4" ]; then
        curl -sS -o "$RESPONSE_FILE" -w '%{http_code}' -X "$1" "$2" \
             -H 'Content-Type: application/json' -H "Link: $LINK" --data-binary "@$4"
    elif [ -n "$3" ]; then
        curl -sS -o "$RESPONSE_FILE" -w '%{http_code}' -X "$1" "$2" -H "NGSILD-Tenant: $3" -H "Link: $LINK"
    else
        curl -sS -o "$RESPONSE_FILE" -w '%{http_code}' -X "$1" "$2" -H "Link: $LINK"
    fi
}

wait_for_orion() {
    waited=0
    until curl -fsS -o /dev/null "$ORION_URL/version"; do
        if [ "$waited" -ge "$SUBSCRIPTION_WAIT_SECONDS" ]; then
            log "Orion-LD does not answer on $ORION_URL after ${SUBSCRIPTION_WAIT_SECONDS}s"
            exit 1
        fi
        sleep 2
        waited=$((waited + 2))
    done
}

ensure() { # $1 = tenant (may be empty)
    label=${1:-default tenant}
    write_body "$1"
    status=$(request GET "$API/$QUANTUMLEAP_SUBSCRIPTION_ID" "$1")
    case "$status" in
        200)
            status=$(request PATCH "$API/$QUANTUMLEAP_SUBSCRIPTION_ID" "$1" "$BODY_FILE")
            case "$status" in
                204 | 200) log "$label: subscription $QUANTUMLEAP_SUBSCRIPTION_ID already there, brought up to date" ;;
                *) log "$label: PATCH answered $status: $(cat "$RESPONSE_FILE")"; return 1 ;;
            esac
            ;;
        404)
            # The id is added only for creation (a PATCH may not change it).
            sed -e "1s|^{|{\"id\":\"$QUANTUMLEAP_SUBSCRIPTION_ID\",|" "$BODY_FILE" >"$BODY_FILE.new"
            mv "$BODY_FILE.new" "$BODY_FILE"
            status=$(request POST "$API" "$1" "$BODY_FILE")
            case "$status" in
                201) log "$label: subscription $QUANTUMLEAP_SUBSCRIPTION_ID created" ;;
                409) log "$label: subscription $QUANTUMLEAP_SUBSCRIPTION_ID created meanwhile by another run" ;;
                *) log "$label: POST answered $status: $(cat "$RESPONSE_FILE")"; return 1 ;;
            esac
            ;;
        *)
            log "$label: GET answered $status: $(cat "$RESPONSE_FILE")"
            return 1
            ;;
    esac
}

wait_for_orion
if [ -z "$QUANTUMLEAP_TENANTS" ]; then
    ensure ""
else
    for tenant in $(printf '%s' "$QUANTUMLEAP_TENANTS" | tr ',' ' '); do
        ensure "$tenant"
    done
fi
