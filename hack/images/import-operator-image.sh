#!/usr/bin/env bash
# Builds (or takes from the cache) the operator's image with build-operator-image.sh and imports it
# into the local node's containerd, so that pods can run it with `imagePullPolicy: Never` (or
# IfNotPresent: the sha-<hash> tag is never pulled once present):
#
#   hack/images/import-operator-image.sh [BINARY]      (BINARY: as build-operator-image.sh)
#
# Like the pause and Dask images (hack/node.sh import_images), an archive is imported once into
# containerd's store, which outlives the cluster: a marker beside the store, named after the
# archive (whose name carries its input hash), records the import. The last three lines of stdout
# are build-operator-image.sh's (archive=, image=, version_image=); the chart or a manifest is given
# the image= one, the content-hash tag. Fails at once when the node is not running.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
source "$REPO_ROOT/hack/node.sh"   # CONTAINERD_SOCKET, CONTAINERD_ROOT, CTR, containerd_ready

# containerd runs inside the cluster's network namespace, but its socket is a file under
# .cluster/run, so ctr reaches it from here (as cluster-up.sh does).
if ! daemon_pid containerd >/dev/null || ! containerd_ready; then
  die "the local node is not running (no containerd at $CONTAINERD_SOCKET): start it with make cluster-up"
fi

outputs=$("$REPO_ROOT/hack/images/build-operator-image.sh" "$@")
archive=$(sed -n 's/^archive=//p' <<<"$outputs")
image=$(sed -n 's/^image=//p' <<<"$outputs")
version_image=$(sed -n 's/^version_image=//p' <<<"$outputs")
[[ -f $archive && -n $image && -n $version_image ]] || die "build-operator-image.sh printed no archive/image: $outputs"

marker_dir=$CONTAINERD_ROOT/dask-operator-imported
marker=$marker_dir/$(basename "$archive")
# The marker alone would also skip an image someone removed with `ctr images rm`; check the tag too
# (the listing is read whole: grep -q closing the pipe early would fail it under pipefail).
present=$("${CTR[@]}" images ls -q 2>/dev/null || true)
if [[ -e $marker ]] && grep -qxF "$image" <<<"$present"; then
  log "operator image $image already imported"
else
  log "importing $(basename "$archive") into containerd ($image, $version_image)"
  "${CTR[@]}" images import "$archive" >/dev/null
  mkdir -p "$marker_dir"
  touch "$marker"
fi
printf 'archive=%s\nimage=%s\nversion_image=%s\n' "$archive" "$image" "$version_image"
