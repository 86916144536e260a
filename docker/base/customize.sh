#!/bin/sh
# customize.sh ROOTFS FACTS_FILE [SUITE]
# Shared finishing step for the V7 base rootfs (run by `cargo xtask build --registry-free` after
# debootstrap; it also works as an mmdebstrap --customize-hook).
# Writes the container apt/dpkg config, removes docs/caches/host leftovers and
# records facts as shell assignments (key='value', one a line) into FACTS_FILE
# for the image labels: archive_date, security_date (empty without the
# security suite), debian_version, pkg_count, pkg_list. SUITE defaults to
# bookworm and only selects which Release file gives archive_date.
set -eu
R=$1
FACTS=$2
SUITE=${3:-bookworm}

# Date: field of the suite's (In)Release file = state of the archive used
release_date() {
    sed -n 's/^Date: //p' "$R"/var/lib/apt/lists/*_dists_"$1"_InRelease \
        "$R"/var/lib/apt/lists/*_dists_"$1"_Release 2>/dev/null | head -n1
}
{
    echo "archive_date='$(release_date "$SUITE")'"
    echo "security_date='$(release_date "$SUITE-security")'"
    echo "debian_version='$(cat "$R/etc/debian_version")'"
    echo "pkg_count='$(chroot "$R" dpkg-query -W | wc -l)'"
    # "name=version name=version ...", one line, no quotes (fits in a LABEL)
    echo "pkg_list='$(chroot "$R" dpkg-query -W -f '${Package}=${Version} ' | sed 's/ $//')'"
} > "$FACTS"

# Same slimming as the official debian:*-slim images. These files stay in the
# image, so every apt-get install in images built FROM it is slim too.
rm -f "$R/etc/dpkg/dpkg.cfg.d/99mmdebstrap" "$R/etc/apt/apt.conf.d/99mmdebstrap"
cat > "$R/etc/dpkg/dpkg.cfg.d/v7-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
cat > "$R/etc/apt/apt.conf.d/v7-container" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Acquire::GzipIndexes "true";
Acquire::CompressionTypes::Order:: "gz";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF

# what the slim rules would have dropped (debootstrap ignores dpkg.cfg.d
# written after the fact), plus caches and host leftovers
find "$R/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$R/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$R"/usr/share/man/* "$R"/usr/share/info/* "$R"/usr/share/lintian/* "$R"/usr/share/groff/*
find "$R/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
rm -rf "$R"/var/lib/apt/lists/* "$R"/var/cache/apt/archives/*.deb \
       "$R"/var/cache/apt/*.bin "$R"/var/log/apt/* "$R"/var/log/*.log \
       "$R"/tmp/* "$R"/var/tmp/*
mkdir -p "$R/var/lib/apt/lists/partial"
# podman bind-mounts these at run time; do not ship the build host's values
rm -f "$R/etc/resolv.conf" "$R/etc/hostname"
: > "$R/etc/machine-id"
