#!/usr/bin/env bash
# Builds the operator's container image without Docker, from a release binary built on this host:
#
#   hack/images/build-operator-image.sh [BINARY]
#
# BINARY defaults to $CARGO_TARGET_DIR/release/dask-operator (the Makefile's CARGO_TARGET_DIR, else
# $CACHE_ROOT/cargo-target/rust-<rustc version>). The image matches the Dockerfile's (distroless
# cc-debian12:nonroot + the binary) but holds only what the binary needs:
#
#   /usr/local/bin/dask-operator            the binary
#   the shared libraries `ldd` lists         copied from this Debian bookworm host, symlinks resolved,
#   and the dynamic loader                   each at the path the loader looks for it
#   /etc/passwd, /etc/group                  root, and the user and group nonroot (65532)
#   /etc/ssl/certs/ca-certificates.crt       the host's CA bundle ($OPERATOR_CA_BUNDLE overrides it)
#   /tmp                                     mode 1777
#
# User 65532:65532, Entrypoint ["/usr/local/bin/dask-operator"], Cmd ["run"]. The archive is a
# single-layer docker-archive (docker_archive.py) cached under $CACHE_ROOT/images, named by a hash of
# every input: the binary, the libraries, the CA bundle, the crate version, this script and
# docker_archive.py. Its tags:
#
#   ghcr.io/dask/dask-operator:<crate version>      (Cargo.toml's, checked against `BINARY --version`)
#   ghcr.io/dask/dask-operator:sha-<12 hex>         the input hash: a new build gets a new tag, so a
#                                                   Deployment given it really rolls the new binary out
#
# The last three lines of stdout are
#   archive=<path>
#   image=ghcr.io/dask/dask-operator:sha-<12 hex>
#   version_image=ghcr.io/dask/dask-operator:<version>
# Everything else goes to stderr. Idempotent: with the archive present it only prints these lines.
# Needs no root; as root it also runs the binary from the finished rootfs (chroot, as 65532) to prove
# that the libraries are complete.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

IMAGES_DIR=$REPO_ROOT/hack/images
IMAGE_CACHE=$CACHE_ROOT/images
REPOSITORY=ghcr.io/dask/dask-operator
CA_BUNDLE=${OPERATOR_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

# --- inputs ---

if (( $# > 1 )) || [[ ${1:-} == -* ]]; then
  die "usage: hack/images/build-operator-image.sh [BINARY]"
fi
if [[ -n ${1:-} ]]; then
  binary=$1
else
  if [[ -z ${CARGO_TARGET_DIR:-} ]]; then
    command -v rustc >/dev/null || die "rustc not found: pass the binary or set CARGO_TARGET_DIR"
    CARGO_TARGET_DIR=$CACHE_ROOT/cargo-target/rust-$(rustc --version | awk '{print $2}')
  fi
  binary=$CARGO_TARGET_DIR/release/dask-operator
fi
[[ -f $binary && -x $binary ]] || die "no operator binary at $binary (cargo build --release --locked)"
binary=$(readlink -f "$binary")
[[ $(head -c 4 "$binary" | od -An -c | tr -d ' ') == '177ELF' ]] || die "$binary is not an ELF executable"
# The image's architecture is the binary's (ELF e_machine), not necessarily this host's.
case $(od -An -tx2 -j18 -N2 "$binary" | tr -d ' ') in
  003e) arch=amd64 ;;
  00b7) arch=arm64 ;;
  *) die "$binary: unsupported ELF machine (only x86-64 and aarch64)" ;;
esac
[[ -f $CA_BUNDLE ]] || die "CA bundle $CA_BUNDLE not found (set OPERATOR_CA_BUNDLE)"
for tool in ldd tar python3 sha256sum flock; do
  command -v "$tool" >/dev/null || die "$tool is missing"
done

# The crate version names the image; the binary must be the one Cargo.toml describes (a binary
# built before a version bump would otherwise be tagged with a version it is not).
version=$(sed -n '/^\[package\]/,/^\[/s/^version[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$REPO_ROOT/Cargo.toml")
[[ -n $version ]] || die "no [package] version in $REPO_ROOT/Cargo.toml"
binary_version=$("$binary" --version 2>&1 || true)
[[ $binary_version == "dask-operator $version" ]] \
  || die "$binary reports '$binary_version', Cargo.toml says $version: rebuild it (cargo build --release --locked)"

# The libraries, as the host's loader resolves them: "NAME => PATH (ADDR)" lines, the loader as
# "PATH (ADDR)", the vDSO without a path. Each goes into the image at the path ldd prints (where the
# binary's loader, with no ld.so.cache in the image, finds it in its built-in search path).
ldd_out=$(ldd "$binary" 2>&1) || {
  [[ $ldd_out == *"not a dynamic executable"* || $ldd_out == *"statically linked"* ]] \
    || die "ldd $binary failed: $ldd_out"
  ldd_out=""   # static: no libraries
}
[[ $ldd_out != *"not found"* ]] || die "libraries of $binary are missing on this host: $ldd_out"
libs=()   # in-image paths; the content is the resolved file's
while read -r first arrow path _; do
  if [[ $arrow == "=>" && $path == /* ]]; then libs+=("$path")
  elif [[ $first == /* ]]; then libs+=("$first")
  fi
done <<<"$ldd_out"

# The input hash: the crate version, then one "sha256 in-image-path" line per file.
input_digest() {
  local p
  printf 'version %s\narch %s\n' "$version" "$arch"
  printf '%s %s\n' "$(sha256sum <"$binary" | cut -d' ' -f1)" /usr/local/bin/dask-operator
  for p in "${libs[@]}"; do printf '%s %s\n' "$(sha256sum <"$(readlink -f "$p")" | cut -d' ' -f1)" "$p"; done
  printf '%s %s\n' "$(sha256sum <"$CA_BUNDLE" | cut -d' ' -f1)" /etc/ssl/certs/ca-certificates.crt
  printf '%s %s\n' "$(sha256sum <"$IMAGES_DIR/build-operator-image.sh" | cut -d' ' -f1)" build-operator-image.sh
  printf '%s %s\n' "$(sha256sum <"$IMAGES_DIR/docker_archive.py" | cut -d' ' -f1)" docker_archive.py
}
digest=$(input_digest | sha256sum | cut -d' ' -f1)
out=$IMAGE_CACHE/dask-operator-$version-${digest:0:16}.tar
image=$REPOSITORY:sha-${digest:0:12}
version_image=$REPOSITORY:$version

print_outputs() { printf 'archive=%s\nimage=%s\nversion_image=%s\n' "$out" "$image" "$version_image"; }

if [[ -f $out ]]; then
  print_outputs
  exit 0
fi

# --- building ---

mkdir -p "$IMAGE_CACHE"
# Its own lock (build-images.sh holds .lock for minutes while it builds the Dask image) and its own
# scratch prefix (build-images.sh removes tmp.* under its lock).
exec 9>"$IMAGE_CACHE/.lock-operator"
flock 9
if [[ -f $out ]]; then
  print_outputs
  exit 0
fi
rm -rf "$IMAGE_CACHE"/operator-tmp.*   # holding the lock: left by a build that was killed outright
work=$(mktemp -d "$IMAGE_CACHE/operator-tmp.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "building the operator image $version ($image) from $binary"
root=$work/root
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp"
install -m 0755 "$binary" "$root/usr/local/bin/dask-operator"
for p in "${libs[@]}"; do
  mkdir -p "$root$(dirname "$p")"
  install -m 0755 "$(readlink -f "$p")" "$root$p"
done
install -m 0644 "$CA_BUNDLE" "$root/etc/ssl/certs/ca-certificates.crt"
# As distroless: root, and nonroot for the image's user. No home folder and no shell in the image.
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
  'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin' >"$root/etc/passwd"
printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' >"$root/etc/group"
chmod 0644 "$root/etc/passwd" "$root/etc/group"
find "$root" -type d -exec chmod 0755 {} +
chmod 1777 "$root/tmp"

if (( EUID == 0 )) && command -v chroot >/dev/null; then
  # The binary, run from the rootfs alone as the image's user: proves the library set is complete.
  got=$(chroot --userspec=65532:65532 "$root" /usr/local/bin/dask-operator --version 2>&1) \
    || die "the binary does not run inside the image's rootfs: $got"
  log "runs in the rootfs as 65532: $got"
else
  log "not root: skipped running the binary inside the rootfs (chroot)"
fi

# Entries sorted, owned by 0:0, mtime 0: the same inputs give the same layer bytes.
(cd "$root" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort) >"$work/files"
tar --no-recursion --mtime=@0 --owner=0 --group=0 --numeric-owner --format=ustar \
  -C "$root" -T "$work/files" -cf "$work/rootfs.tar"
log "rootfs: $(grep -c . "$work/files") entries, $(du -h --apparent-size "$work/rootfs.tar" | cut -f1) uncompressed"

python3 "$IMAGES_DIR/docker_archive.py" --rootfs "$work/rootfs.tar" --output "$work/image.tar" \
  --tag="$image" --tag="$version_image" \
  --architecture="$arch" \
  --entrypoint='["/usr/local/bin/dask-operator"]' --cmd='["run"]' \
  --env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env=SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --workdir=/ --user=65532:65532 \
  --label=org.opencontainers.image.title=dask-operator \
  --label="org.opencontainers.image.description=A Kubernetes operator for Dask clusters and jobs, a drop-in for dask-kubernetes" \
  --label="org.opencontainers.image.version=$version" \
  --label=org.opencontainers.image.licenses=Apache-2.0 \
  --created-by=hack/images/build-operator-image.sh
mv -f "$work/image.tar" "$out"   # same file system: the archive appears complete or not at all
log "wrote $out ($(du -h --apparent-size "$out" | cut -f1))"
print_outputs
