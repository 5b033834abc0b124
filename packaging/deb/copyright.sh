#!/usr/bin/env bash
# packaging/deb/copyright.sh BINARY...: the package's copyright file, on
# stdout: rabbitc's own licence, then the licence files, as they ship them,
# of the Go toolchain and of every module linked into the binaries (`go
# version -m`: the binaries are static, so those are part of the package).
set -euo pipefail
export PATH=/usr/local/go/bin:$PATH

cat <<'TXT'
rabbitc: a rootless container runtime
Source: https://github.com/rabbitc/rabbitc

Copyright: the rabbitc authors
License: Apache-2.0
 On Debian systems the complete text of the Apache License, Version 2.0,
 is in /usr/share/common-licenses/Apache-2.0.

The binaries are statically linked Go programs. They contain the Go
runtime and standard library and the Go modules below, each under the
licence whose text follows it.
TXT

modcache=$(go env GOMODCACHE)
section() { # TITLE DIR
	local f found=
	printf '\n%s\n%s\n' "$1" "$(printf '%s' "$1" | tr -c '\n' '=')"
	for f in "$2"/LICENSE* "$2"/LICENCE* "$2"/COPYING* "$2"/NOTICE*; do
		# A licence of documentation (go-digest's LICENSE.docs) covers
		# nothing in the binaries.
		[ -f "$f" ] || continue
		[ "${f%.docs}" = "$f" ] || continue
		found=1
		printf '\n-- %s\n\n' "${f##*/}"
		# Debian's own copies of the long licences, as policy asks; the
		# copyright lines of the file are kept.
		if grep -q 'Apache License' "$f" && grep -q 'Version 2.0, January 2004' "$f"; then
			grep -E '^[[:space:]]*Copyright [0-9(]' "$f" | grep -v '\[yyyy\]' | sed 's/^[[:space:]]*//' || true
			echo "Apache License, Version 2.0: /usr/share/common-licenses/Apache-2.0"
		elif head -1 "$f" | grep -q '^Mozilla Public License Version 2.0'; then
			echo "Mozilla Public License, Version 2.0: /usr/share/common-licenses/MPL-2.0"
		else
			cat "$f"
		fi
	done
	if [ -z "$found" ]; then
		echo "packaging/deb/copyright.sh: no licence file in $2" >&2
		exit 1
	fi
}
section "Go $(go env GOVERSION) (runtime and standard library)" "$(go env GOROOT)"
go version -m "$@" | awk '$1 == "dep" { print $2, $3 }' | sort -u | while read -r mod ver; do
	# The module cache escapes capital letters as !lower.
	dir=$modcache/$(printf '%s@%s' "$mod" "$ver" | sed 's/[A-Z]/!\L&/g')
	section "$mod $ver" "$dir"
done
