#!/usr/bin/env bash
# Builds a Caddy with the edgecache module by xcaddy, which go.mod keeps as a
# tool dependency (go get -tool github.com/caddyserver/xcaddy/cmd/xcaddy@v0.4.5):
# no separate install. The binary behaves as `go build ./cmd/edgecache` does.
# Extra arguments go to xcaddy build (e.g. --output /usr/local/bin/caddy, or
# more --with plugins).
#
# The module is pinned to the zero pseudo-version: xcaddy runs `go get` on
# the module it is given, and without a version Go asks the module proxy for
# its latest release, which an unpublished checkout does not have. The
# replacement (=.) builds this folder whatever the version says.
set -euo pipefail
cd "$(dirname "$0")"
caddy_version=$(go list -m -f '{{.Version}}' github.com/caddyserver/caddy/v2)
exec go tool xcaddy build "$caddy_version" \
	--with github.com/edgecache/edgecache@v0.0.0-00010101000000-000000000000=. "$@"
