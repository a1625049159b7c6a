#!/usr/bin/env bash
# Takes a screenshot of one saga's trace in the Jaeger UI with headless Chromium: places an order
# inside a trace of its own on the stack `make up` started, waits until Jaeger holds every hop,
# and saves the trace view.
#
#   scripts/screenshot-trace.sh [output.png]       (default docs/images/saga-trace.png)
#
# Jaeger must serve a real UI: the Go module `make up` builds Jaeger from carries only a
# placeholder page, so start the stack with JAEGER_UI_ASSETS=<a jaeger-ui build directory> (see
# the README, "See a saga"). Chromium is Debian's package (installed here when run as root).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-docs/images/saga-trace.png}
JAEGER_URL=${JAEGER_URL:-http://127.0.0.1:16686}
ORDER_URL=${ORDER_URL:-http://127.0.0.1:8080}
INVENTORY_URL=${INVENTORY_URL:-http://127.0.0.1:8083}
TOKEN=${INVENTORY_ADMIN_TOKEN:-dev-inventory-admin}

die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  [ "$(id -u)" = 0 ] || die "Chromium not found: apt-get install chromium"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
  browser=$(command -v chromium)
fi
curl -fs "$JAEGER_URL/api/services" >/dev/null || die "Jaeger does not answer at $JAEGER_URL: run make up"
if curl -fs "$JAEGER_URL/" | grep -q 'This is a placeholder'; then
  die "Jaeger serves its placeholder page, not the UI: restart it with JAEGER_UI_ASSETS set (README, \"See a saga\")"
fi

hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
trace_id=$(hex 16)
sku="screenshot-$(hex 4)"
curl -fs -o /dev/null -X PUT "$INVENTORY_URL/stock/$sku" -H "Authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' -d '{"on_hand": 5}'
curl -fs -o /dev/null -X POST "$ORDER_URL/orders" -H 'content-type: application/json' \
  -H "traceparent: 00-$trace_id-$(hex 8)-01" -d '{
    "customer_id": "cust-42",
    "items": [{"sku": "'"$sku"'", "quantity": 2, "unit_price_cents": 1250}],
    "currency": "EUR", "payment_method": "tok_visa",
    "shipping_address": {"name": "Ada Lovelace", "line1": "12 Analytical Row",
                         "city": "London", "postal_code": "N1 9GU", "country": "GB"}
  }' || die "the order was not accepted"

# The saga's last hop is Order handling its own OrderConfirmed.
printf 'waiting for trace %s' "$trace_id"
for _ in $(seq 60); do
  if curl -fs "$JAEGER_URL/api/traces/$trace_id" | grep -q '"OrderConfirmed"'; then
    break
  fi
  printf '.'
  sleep 1
done
echo
curl -fs "$JAEGER_URL/api/traces/$trace_id" | grep -q '"OrderConfirmed"' ||
  die "trace $trace_id never completed in Jaeger"
# Spans of the last hop may still be in flight: let the exporter's next batch land.
sleep 3

mkdir -p "$(dirname "$OUT")"
"$browser" --headless=new --no-sandbox --disable-gpu --hide-scrollbars \
  --window-size=1600,900 --virtual-time-budget=20000 \
  --screenshot="$OUT" "$JAEGER_URL/trace/$trace_id" 2>/dev/null
[ -s "$OUT" ] || die "Chromium wrote no screenshot"
echo "trace $trace_id: $OUT"
