#!/bin/sh
# Rebuild the real-recording corpus from scratch on a fresh Debian or Ubuntu machine.
#
#   sudo tools/build_real_corpus.sh [OUT_DIR] [extra `mka data real` options]
#
# Installs the Debian packages the corpus comes from (apt-get: 0ad-data, minetest-data,
# supertuxkart-data, redeclipse-data, hydrogen-drumkits, sound-theme-freedesktop, scorched3d-data,
# fluid-soundfont-gm, fluidsynth; about 3.1 GB to download), then runs the builder with the
# checked-in label map. The same packages and settings give the same corpus. Needs root for
# apt-get and mka installed (pip install -e .). See docs/real-corpus.md.
set -eu
OUT="${1:-data/real}"
[ "$#" -gt 0 ] && shift
exec mka data real --from-debian --install --overwrite --out "$OUT" "$@"
