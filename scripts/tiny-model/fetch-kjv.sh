#!/usr/bin/env bash
# Fetches the King James Version from Debian's bible-kjv-text package and writes it as
# plain text (one verse per line, "Book N" chapter headings), byte-identical on every run.
#
#   scripts/tiny-model/fetch-kjv.sh OUT_DIR
#
# Downloads two Debian bookworm packages with `apt-get download` (no installation, no
# root needed once the package lists are there: run `apt-get update` first as root):
#   bible-kjv-text 4.38 (all)    the compressed text, /usr/lib/bible.data
#   bible-kjv 4.38 (amd64)       the Bible Retrieval System program `bible` that decodes it
# checks their SHA-256 against the pinned values below, unpacks them with dpkg-deb into
# OUT_DIR/debs, and runs `bible -l100000 Gen1:1-Rev22:21` (every verse, unwrapped) into
# OUT_DIR/kjv-raw.txt. On a machine where `bible-kjv` is installed and the download fails,
# the installed program and data are used instead (same text).
set -euo pipefail
out=${1:?usage: fetch-kjv.sh OUT_DIR}
mkdir -p "$out/debs"
cd "$out/debs"

TEXT_DEB=bible-kjv-text_4.38_all.deb
TEXT_SHA=d61b6aad4c51ba9e2800b825325fa6a09e99a0d02a9bb6dc4724fcc4995a1b7a
PROG_DEB=bible-kjv_4.38_amd64.deb
PROG_SHA=75a49c032a6efa9faa2beb4a9acb70974380122906329d0e100de36cc88ff02d
RAW_SHA=6f74f5589333c56c263963e6347dba662bae2d96861302e690aaae0b4a855eda

fetch() { # name file sha
  if [ ! -f "$2" ]; then apt-get download "$1=4.38" >/dev/null 2>&1 || apt-get download "$1" >/dev/null || return 1; fi
  echo "$3  $2" | sha256sum -c --quiet - || { echo "fetch-kjv: $2 has an unexpected SHA-256 (another version?); the pinned one is 4.38" >&2; return 1; }
}

bible=""; data=""
if fetch bible-kjv-text "$TEXT_DEB" "$TEXT_SHA" && fetch bible-kjv "$PROG_DEB" "$PROG_SHA"; then
  dpkg-deb -x "$TEXT_DEB" text
  dpkg-deb -x "$PROG_DEB" prog
  bible="$PWD/prog/usr/bin/bible"; data="$PWD/text/usr/lib"
  cp text/usr/share/doc/bible-kjv-text/copyright "$out/bible-kjv-text.copyright"
elif [ -x /usr/bin/bible ] && [ -f /usr/lib/bible.data ]; then
  echo "fetch-kjv: download failed; using the installed bible-kjv" >&2
  bible=/usr/bin/bible; data=/usr/lib
  cp /usr/share/doc/bible-kjv-text/copyright "$out/bible-kjv-text.copyright"
else
  echo "fetch-kjv: cannot download bible-kjv-text / bible-kjv 4.38 (run 'apt-get update' as root first), and bible-kjv is not installed" >&2
  exit 1
fi
"$bible" -p "$data" -l100000 Gen1:1-Rev22:21 > "$out/kjv-raw.txt"
if ! echo "$RAW_SHA  $out/kjv-raw.txt" | sha256sum -c --quiet -; then
  echo "fetch-kjv: warning: $out/kjv-raw.txt differs from the text the bundled model was made from" >&2
fi
echo "fetch-kjv: $(wc -c < "$out/kjv-raw.txt") bytes in $out/kjv-raw.txt"
