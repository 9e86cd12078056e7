#!/usr/bin/env bash
# Screenshot an xspec HTML report with headless Chromium, offline.
# Usage: scripts/screenshot_report.sh REPORT.html OUT.png [WIDTH,HEIGHT]
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 REPORT.html OUT.png [WIDTH,HEIGHT]" >&2
  exit 2
fi
html=$(realpath "$1")
png=$(realpath -m "$2")
size=${3:-1400,3000}
chromium=${CHROMIUM:-/usr/bin/chromium}
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --hide-scrollbars --user-data-dir="$profile" --virtual-time-budget=5000 \
  --window-size="$size" --screenshot="$png" "file://$html" 2>/dev/null
test -s "$png"
echo "$png"
