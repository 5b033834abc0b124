#!/usr/bin/env bash
# packaging/deb/build.sh VERSION: builds build/rabbitc_DEBVERSION_ARCH.deb
# with dpkg-deb from what `make install PREFIX=/usr` installs (run by `make
# deb` after `make build docs`, from the repository root), plus the package's
# own files: control, md5sums, the maintainer scripts (the AppArmor
# profile), copyright and changelog.
#
# The Debian version is VERSION without a leading "v" when it is a release
# tag (v1.2.3 -> 1.2.3), else 0~gitDATE.COMMIT (no tags yet): a native
# package, sorting before any release. SOURCE_DATE_EPOCH (the last commit's
# time, from make) dates the changelog and the files: the same commit gives
# the same package. DPKG_DEB_FLAGS (default -Zxz) are dpkg-deb's: the tests
# take -Zgzip, 5 times faster here for a package 1.6 times larger.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$PATH LC_ALL=C

version=${1:?usage: packaging/deb/build.sh VERSION}
epoch=${SOURCE_DATE_EPOCH:-$(date +%s)}
case $version in
v[0-9]*) debversion=${version#v} ;;
*) debversion=0~git$(date -u -d "@$epoch" +%Y%m%d).$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown) ;;
esac
case $version in *-dirty) debversion=$debversion+dirty ;; esac
debversion=${debversion//-/+}

goarch=$(go env GOARCH)
case $goarch in
386) arch=i386 ;;
arm) arch=armhf ;;
ppc64le) arch=ppc64el ;;
*) arch=$goarch ;; # amd64, arm64, riscv64, s390x, ...
esac

stage=build/deb/root
deb=build/rabbitc_${debversion}_$arch.deb
rm -rf build/deb "$deb"
mkdir -p "$stage/DEBIAN"

# What make install installs, as Debian lays it out; the profile goes where
# postinst finds it (see there why it is not in /etc/apparmor.d).
make --no-print-directory install DESTDIR="$stage" PREFIX=/usr ZSHCOMPDIR=/usr/share/zsh/vendor-completions APPARMOR=no >/dev/null
install -D -m 0644 build/apparmor-rabbitc "$stage/usr/share/rabbitc/apparmor/rabbitc"
gzip -9n "$stage"/usr/share/man/man1/*.1

doc=$stage/usr/share/doc/rabbitc
install -d -m 0755 "$doc"
{
	echo "rabbitc ($debversion) unstable; urgency=medium"
	echo
	echo "  * Built from commit $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown) of"
	echo "    https://github.com/rabbitc/rabbitc, whose history is the change log."
	echo
	echo " -- rabbitc maintainers <maintainers@users.noreply.r-seed-ea61d202.example>  $(date -u -R -d "@$epoch")"
} | gzip -9n >"$doc/changelog.gz"
packaging/deb/copyright.sh bin/rabbitc bin/rabbitc-image >"$doc/copyright"
chmod 0644 "$doc"/*

# rabbitc is static on purpose: every container start execs it three or
# four times, and a dynamic one would go through the loader each time
# (Makefile: GOBUILD).
install -D -m 0644 packaging/deb/lintian-overrides "$stage/usr/share/lintian/overrides/rabbitc"

for s in postinst prerm postrm; do
	install -m 0755 "packaging/deb/$s" "$stage/DEBIAN/$s"
done
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s|@VERSION@|$debversion|" -e "s|@ARCH@|$arch|" -e "s|@SIZE@|$size|" packaging/deb/control >"$stage/DEBIAN/control"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/md5sums"

find "$stage" -exec touch -h -d "@$epoch" {} +
# shellcheck disable=SC2086 # flags
dpkg-deb --root-owner-group ${DPKG_DEB_FLAGS:--Zxz} --build "$stage" "$deb" >/dev/null
echo "deb: $deb ($(du -h "$deb" | cut -f1))"
