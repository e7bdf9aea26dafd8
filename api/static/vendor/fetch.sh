#!/usr/bin/env bash
# Re-fetch the vendored browser assets with `npm pack` (pinned versions), check each tarball's
# integrity against README.md and copy the files listed there. Run by `make vendor`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fetch() {  # package@version, destination folder, files inside the package...
  local spec="$1" dest="$2"
  shift 2
  local expected actual tarball
  expected="$(grep -E "^${spec} " "$here/README.md" | awk '{print $2}')"
  tarball="$(cd "$work" && npm pack --silent "$spec")"
  actual="sha512-$(openssl dgst -sha512 -binary "$work/$tarball" | base64 -w0)"
  if [[ "$actual" != "$expected" ]]; then
    echo "$spec: integrity $actual, README.md pins $expected" >&2
    exit 1
  fi
  mkdir -p "$work/$dest" "$here/$dest"
  tar xzf "$work/$tarball" -C "$work/$dest"
  for f in "$@"; do cp "$work/$dest/package/$f" "$here/$dest/"; done
  echo "$spec -> api/static/vendor/$dest"
}

fetch lightweight-charts@5.3.0 lightweight-charts \
  dist/lightweight-charts.standalone.production.js LICENSE
fetch swagger-ui-dist@5.35.0 swagger-ui \
  swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE NOTICE
fetch redoc@2.5.4 redoc bundles/redoc.standalone.js LICENSE
# The one change to a vendored file: ReDoc's sidebar loads Redocly's logo from their CDN; point it
# at an empty data: URL (ReDoc removes an image that fails to load), so /redoc stays offline.
sed -i 's|src:"https://cdn.redoc.ly/redoc/logo-mini.svg"|src:"data:,"|' "$here/redoc/redoc.standalone.js"
grep -q 'src:"data:,"' "$here/redoc/redoc.standalone.js"
