#!/bin/sh
# Build the V7 Debian base image without any container registry:
#   mmdebstrap (or debootstrap) minbase -> slim (customize.sh) -> tar -> podman import
# Run as root on a Debian host with mmdebstrap (or debootstrap) and podman.
#
# Environment (all optional):
#   TAG        image to create              (default localhost/v7-base:bookworm)
#   SUITE      Debian suite                 (default bookworm)
#   MIRROR     Debian mirror, plain HTTP    (default http://deb.debian.org/debian/)
#   METHOD     mmdebstrap | debootstrap     (default mmdebstrap, ~2x faster)
#   WORK       scratch dir (rootfs, tar)    (default /var/tmp/v7-base)
#   DEBCACHE   kept .debs for re-runs       (default $WORK/debcache)
#   FORCE=1    rebuild even if TAG exists with the same recipe
# Prints "phase NAME SECONDS" for every phase.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
TAG=${TAG:-localhost/v7-base:bookworm}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian/}
METHOD=${METHOD:-mmdebstrap}
WORK=${WORK:-/var/tmp/v7-base}
DEBCACHE=${DEBCACHE:-$WORK/debcache}
ROOTFS=$WORK/rootfs
TARBALL=$WORK/rootfs.tar
FACTS=$WORK/facts
# Bump when mkbase.sh/customize.sh change what ends up in the image.
RECIPE=${RECIPE:-v7-base-1}

now() { date +%s.%N; }
phase() { echo "phase $1 $(echo "$(now) - $2" | bc)"; }

if [ "${FORCE:-0}" != 1 ] && podman image exists "$TAG"; then
    have=$(podman image inspect --format '{{ index .Labels "org.v7.base.recipe" }}' "$TAG")
    if [ "$have" = "$RECIPE" ]; then
        echo "$TAG already built (recipe $have); FORCE=1 to rebuild"
        exit 0
    fi
fi

mkdir -p "$WORK" "$DEBCACHE"
rm -rf "$ROOTFS" "$TARBALL" "$FACTS"

t=$(now)
case $METHOD in
mmdebstrap)
    # --dpkgopt excludes apply while installing; customize.sh re-writes them
    # into /etc/dpkg/dpkg.cfg.d/v7-slim for later installs.
    # merged-usr hook: without it mmdebstrap 1.3.5 picks usrmerge, which
    # pulls in perl (+8 packages, +45 MB).
    mmdebstrap --variant=minbase --skip=output/dev --skip=essential/unlink \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/groff/*' \
        --dpkgopt='path-exclude=/usr/share/lintian/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-include=/usr/share/locale/locale.alias' \
        --aptopt='Acquire::Languages "none"' \
        --aptopt='APT::Install-Recommends "false"' \
        --setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
        --setup-hook="sync-in $DEBCACHE /var/cache/apt/archives/" \
        --customize-hook="sync-out /var/cache/apt/archives $DEBCACHE" \
        --customize-hook="\"$HERE/customize.sh\" \"\$1\" \"$FACTS\"" \
        "$SUITE" "$TARBALL" "$MIRROR"
    phase mmdebstrap "$t"
    ;;
debootstrap)
    debootstrap --variant=minbase --cache-dir="$DEBCACHE" "$SUITE" "$ROOTFS" "$MIRROR"
    phase debootstrap "$t"
    t=$(now)
    "$HERE/customize.sh" "$ROOTFS" "$FACTS"
    phase customize "$t"
    t=$(now)
    tar --numeric-owner --xattrs --acls -C "$ROOTFS" -cf "$TARBALL" .
    phase tar "$t"
    ;;
*) echo "METHOD must be mmdebstrap or debootstrap" >&2; exit 2 ;;
esac

. "$FACTS"
t=$(now)
podman import \
    --change 'CMD ["/bin/bash"]' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL org.v7.base.suite=$SUITE" \
    --change "LABEL org.v7.base.mirror=$MIRROR" \
    --change "LABEL org.v7.base.method=$METHOD" \
    --change "LABEL org.v7.base.variant=minbase" \
    --change "LABEL org.v7.base.archive-date=\"$archive_date\"" \
    --change "LABEL org.v7.base.debian-version=$debian_version" \
    --change "LABEL org.v7.base.packages=$pkg_count" \
    --change "LABEL org.v7.base.built=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --change "LABEL org.v7.base.recipe=$RECIPE" \
    --message "$METHOD --variant=minbase $SUITE $MIRROR" \
    "$TARBALL" "$TAG"
phase import "$t"

ls -l "$TARBALL"
rm -rf "$ROOTFS" "$TARBALL"
podman image inspect --format '{{.Id}} {{.Size}}' "$TAG"
