#!/usr/bin/env bash
# Builds the two container images the local node runs, without any container registry:
#
#   pause  the pod sandbox: pause.c compiled statically, alone in the image as /pause.
#   dask   Debian bookworm (mmdebstrap, minbase) with a venv at /opt/venv holding the exact
#          packages of dask-requirements.txt from PyPI.
#
# Each is written as a single-layer docker-archive (docker_archive.py) for
# `ctr -n k8s.io images import`. Archives are cached under $CACHE_ROOT/images, named by a hash of
# their inputs; when both exist this script only prints them. The last two lines of stdout are
#   pause=<archive>
#   dask=<archive>
# Everything else goes to stderr. Needs root (mmdebstrap --mode=root, chroot).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

IMAGES_DIR=$REPO_ROOT/hack/images
IMAGE_CACHE=$CACHE_ROOT/images

DEBIAN_SUITE=bookworm
# deb.debian.org is this machine's Debian mirror (as in /etc/apt/sources.list.d/debian.sources).
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
DASK_DEBS=(python3 python3-venv ca-certificates tini procps netbase)
# pip inside the chroot trusts this bundle (the host's, which holds any local TLS-proxy CA); it
# is copied in for the install only and is not part of the image.
BUILD_CA_BUNDLE=${BUILD_CA_BUNDLE:-${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}}

DASK_VERSION=$(sed -n 's/^dask==\([^[:space:]#]*\).*/\1/p' "$IMAGES_DIR/dask-requirements.txt")
[[ -n $DASK_VERSION ]] || die "no dask==VERSION line in hack/images/dask-requirements.txt"

PAUSE_TAGS=(localhost/pause:local)
DASK_TAGS=("ghcr.io/dask/dask:$DASK_VERSION" dask-kubernetes:dev "localhost/dask:$DASK_VERSION")
DASK_PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# input_hash FILE... [-- STRING...]: short hash of the files' contents and of extra strings.
input_hash() {
  local files=() extra=()
  while (($#)) && [[ $1 != -- ]]; do files+=("$1"); shift; done
  (($#)) && shift && extra=("$@")
  { cat "${files[@]}"; printf '%s\n' "${extra[@]}"; } | sha256sum | cut -c1-16
}

# The recipe (this script, the archive writer) is an input of both images; README.md is not.
common=("$IMAGES_DIR/build-images.sh" "$IMAGES_DIR/docker_archive.py")
pause_out=$IMAGE_CACHE/pause-$(input_hash "${common[@]}" "$IMAGES_DIR/pause.c").tar
dask_out=$IMAGE_CACHE/dask-$DASK_VERSION-$(input_hash "${common[@]}" "$IMAGES_DIR/dask-requirements.txt" \
  -- "$DEBIAN_MIRROR" "$DEBIAN_SECURITY_MIRROR").tar

outputs_exist() { [[ -f $pause_out && -f $dask_out ]]; }
print_outputs() { printf 'pause=%s\ndask=%s\n' "$pause_out" "$dask_out"; }

if outputs_exist; then
  print_outputs
  exit 0
fi

# --- building: root and tools needed ---

(( EUID == 0 )) || die "building the images needs root (mmdebstrap --mode=root, chroot)"
for tool in gcc mmdebstrap mmtarfilter python3 tar flock; do
  command -v "$tool" >/dev/null || die "$tool is missing; run hack/install-deps.sh"
done
[[ -f $BUILD_CA_BUNDLE ]] || die "CA bundle $BUILD_CA_BUNDLE not found (set BUILD_CA_BUNDLE)"

mkdir -p "$IMAGE_CACHE"
exec 9>"$IMAGE_CACHE/.lock"
flock 9   # one build at a time; a second caller waits, then finds the archives
if outputs_exist; then
  print_outputs
  exit 0
fi

# Scratch space (rootfs dirs and tars, mmdebstrap's chroot) under the cache, not /tmp: it is
# several hundred MB. --one-file-system: should a killed mmdebstrap leave /proc, /sys or /dev
# mounted inside its chroot, rm stops there instead of descending into the host's.
# Holding the lock, any tmp.* left is from a build that was killed outright (SIGKILL).
rm -rf --one-file-system "$IMAGE_CACHE"/tmp.* || log "warning: could not remove all of $IMAGE_CACHE/tmp.*"
work=$(mktemp -d "$IMAGE_CACHE/tmp.XXXXXX")
trap 'rm -rf --one-file-system "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# write_archive OUT ROOTFS_TAR ARGS...: docker_archive.py into the scratch dir, then a rename on
# the same file system: the archive appears complete or not at all.
write_archive() {
  local out=$1 rootfs=$2; shift 2
  python3 "$IMAGES_DIR/docker_archive.py" --rootfs "$rootfs" --output "$work/image.tar" "$@"
  mv -f "$work/image.tar" "$out"
  log "wrote $out ($(du -h "$out" | cut -f1))"
}

build_pause() {
  log "building the pause image"
  mkdir -p "$work/pause-root"
  gcc -static -O2 -Wall -Wextra -Werror -s -o "$work/pause-root/pause" "$IMAGES_DIR/pause.c"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=ustar \
    -C "$work/pause-root" -cf "$work/pause-rootfs.tar" pause
  # Like registry.k8s.io/pause: runs as nobody.
  write_archive "$pause_out" "$work/pause-rootfs.tar" \
    "${PAUSE_TAGS[@]/#/--tag=}" \
    --entrypoint='["/pause"]' \
    --env="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --workdir=/ --user=65535:65535
}

build_dask() {
  log "building the Dask $DASK_VERSION image (Debian $DEBIAN_SUITE + pip; a few minutes)"
  local aptopts=() line index=()
  # mmdebstrap does not read the host's apt.conf.d: carry over what apt needs here to reach the
  # mirror (a proxy, relaxed Valid-Until/Date checks for a snapshot mirror).
  while read -r line; do
    aptopts+=("--aptopt=$line")
  done < <(apt-config dump | grep -E '^Acquire::(https?::Proxy|Check-Valid-Until|Check-Date)[ :]' || true)
  # The scratch dir is under root's home, which the _apt user cannot enter: download as root
  # outright instead of apt warning that it does.
  aptopts+=('--aptopt=APT::Sandbox::User "root"')
  [[ -n ${PIP_INDEX_URL:-} ]] && index=(--index-url "$PIP_INDEX_URL")

  # Read by the customize hooks below (mmdebstrap passes its environment on to them).
  export BUILD_CA_BUNDLE DASK_REQUIREMENTS=$IMAGES_DIR/dask-requirements.txt
  export PIP_INSTALL_ARGS="${index[*]}"
  # A clean environment inside the chroot: none of the host's PIP_*, PYTHON* or PATH entries.
  export CHROOT_ENV="HOME=/root LANG=C.UTF-8 PATH=$DASK_PATH"

  # distributed 2026.6.0 dropped the dask-scheduler and dask-worker console scripts (only
  # `dask scheduler` / `dask worker` remain), but upstream manifests run `args: [dask-scheduler]`.
  # Add what pip used to generate for them; cp -n keeps real ones should a pin bring them back.
  mkdir -p "$work/shims"
  local c
  for c in scheduler worker; do
    printf '%s\n' '#!/opt/venv/bin/python' 'import sys' "from distributed.cli.dask_$c import main" \
      "if __name__ == \"__main__\":" '    sys.exit(main())' >"$work/shims/dask-$c"
    chmod 0755 "$work/shims/dask-$c"
  done
  export DASK_SHIMS=$work/shims

  local debs
  debs=$(IFS=,; echo "${DASK_DEBS[*]}")
  # Hooks run as `sh -c HOOK exec ROOT`, so "$1" below is the chroot directory; the other
  # variables are expanded by that shell too (hence the single quotes).
  # shellcheck disable=SC2016
  TMPDIR=$work mmdebstrap --mode=root --variant=minbase --format=tar \
    --include="$debs" \
    "${aptopts[@]}" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --customize-hook='chroot "$1" env -i $CHROOT_ENV python3 -m venv /opt/venv' \
    --customize-hook='cp /etc/hosts "$1/etc/hosts"' \
    --customize-hook='cp "$BUILD_CA_BUNDLE" "$1/tmp/build-ca.crt"' \
    --customize-hook='cp "$DASK_REQUIREMENTS" "$1/tmp/dask-requirements.txt"' \
    --customize-hook='chroot "$1" env -i $CHROOT_ENV pip --isolated install --no-cache-dir \
        --no-deps --only-binary=:all: --require-virtualenv --root-user-action=ignore \
        --disable-pip-version-check --no-input --progress-bar=off --cert=/tmp/build-ca.crt \
        $PIP_INSTALL_ARGS -r /tmp/dask-requirements.txt' \
    --customize-hook='chroot "$1" env -i $CHROOT_ENV pip --isolated check --disable-pip-version-check' \
    --customize-hook='cp -n "$DASK_SHIMS"/dask-* "$1/opt/venv/bin/"' \
    --customize-hook='rm -f "$1"/etc/hosts "$1"/etc/resolv.conf "$1"/etc/hostname "$1"/tmp/build-ca.crt \
        "$1"/tmp/dask-requirements.txt' \
    --customize-hook='chroot "$1" env -i $CHROOT_ENV python -c \
        "import dask.array, distributed, bokeh, numpy; print(\"dask\", dask.__version__)"' \
    --customize-hook='chroot "$1" env -i $CHROOT_ENV dask-scheduler --version' \
    --customize-hook='chroot "$1" env -i $CHROOT_ENV dask-worker --version' \
    "$DEBIAN_SUITE" - \
    "deb $DEBIAN_MIRROR $DEBIAN_SUITE main" \
    "deb $DEBIAN_MIRROR $DEBIAN_SUITE-updates main" \
    "deb $DEBIAN_SECURITY_MIRROR $DEBIAN_SUITE-security main" \
    | mmtarfilter --path-exclude='/dev/*' >"$work/dask-rootfs.tar"   # keep ./dev/, drop device nodes

  write_archive "$dask_out" "$work/dask-rootfs.tar" \
    "${DASK_TAGS[@]/#/--tag=}" \
    --entrypoint='["tini", "-g", "--"]' \
    --cmd='["python"]' \
    --env="PATH=$DASK_PATH" --env=VIRTUAL_ENV=/opt/venv --env=LANG=C.UTF-8 \
    --workdir=/ \
    --label="org.opencontainers.image.version=$DASK_VERSION" \
    --label="org.opencontainers.image.description=Dask $DASK_VERSION on Debian $DEBIAN_SUITE (hack/images)"
}

start=$SECONDS
[[ -f $pause_out ]] || build_pause
[[ -f $dask_out ]] || build_dask
log "images ready in $((SECONDS - start))s"
print_outputs
