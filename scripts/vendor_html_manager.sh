#!/usr/bin/env bash
# Refresh the vendored widget renderer used by ehrexplain.viz.export (offline HTML export).
# Run from the repository root; needs npm. The file is committed, so users never run this.
set -euo pipefail
version="${1:-1.0.15}"
tmp="$(mktemp -d)"
(cd "$tmp" && npm pack "@jupyter-widgets/html-manager@${version}" >/dev/null && tar xzf ./*.tgz)
cp "$tmp/package/dist/embed.js" ehrexplain/viz/static/html-manager-embed.js
rm -rf "$tmp"
echo "vendored @jupyter-widgets/html-manager@${version} dist/embed.js"
