#!/usr/bin/env python3
"""Wrap a rootfs tar into a single-layer docker-archive (the `docker save` format).

    docker_archive.py --rootfs rootfs.tar --output image.tar --tag localhost/x:1 \
        [--tag ...] [--entrypoint JSON] [--cmd JSON] [--env K=V ...] [--workdir DIR] \
        [--user U] [--label K=V ...]

The archive holds
    <sha256 of layer>/layer.tar   the rootfs tar, uncompressed and unchanged
    <sha256 of config>.json       the image config (its file name is the image ID)
    manifest.json                 [{"Config": ..., "RepoTags": [...], "Layers": [...]}]
which `ctr images import`, `skopeo` and `docker load` read. The same input gives the same bytes:
entries have fixed mtimes and owners, the JSON is sorted, and `created` is SOURCE_DATE_EPOCH
(default 0). Only the standard library is used; large files are hashed and copied in chunks.
"""

import argparse
import datetime
import hashlib
import io
import json
import os
import sys
import tarfile

CHUNK = 1 << 20


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(CHUNK)
            if not block:
                return h.hexdigest()
            h.update(block)


class HashingReader:
    """File wrapper that hashes what is read through it."""

    def __init__(self, f):
        self.f, self.h = f, hashlib.sha256()

    def read(self, n=-1):
        block = self.f.read(n)
        self.h.update(block)
        return block


def json_list(text, option):
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        sys.exit(f"docker_archive.py: {option} must be a JSON list of strings: {e}")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        sys.exit(f"docker_archive.py: {option} must be a JSON list of strings, got {text!r}")
    return value


def key_value(items, option):
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            sys.exit(f"docker_archive.py: {option} wants KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def tar_info(name, size, mtime, mode=0o644, kind=tarfile.REGTYPE):
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.type = size, mtime, mode, kind
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rootfs", required=True, help="uncompressed rootfs tar, used as the only layer")
    p.add_argument("--output", required=True, help="docker-archive tar to write")
    p.add_argument("--tag", action="append", required=True, help="RepoTag, repeatable")
    p.add_argument("--entrypoint", help='JSON list, e.g. \'["tini", "-g", "--"]\'')
    p.add_argument("--cmd", help="JSON list; omitted: no Cmd")
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE, repeatable, kept in order")
    p.add_argument("--workdir", default="/")
    p.add_argument("--user", help="e.g. 65535:65535; omitted: root")
    p.add_argument("--label", action="append", default=[], help="KEY=VALUE, repeatable")
    p.add_argument("--architecture", default="amd64")
    p.add_argument("--created-by", default="hack/images/build-images.sh")
    args = p.parse_args()

    config = {"Env": args.env, "WorkingDir": args.workdir}
    key_value(args.env, "--env")  # validate only: Env stays a list in the given order
    if args.entrypoint is not None:
        config["Entrypoint"] = json_list(args.entrypoint, "--entrypoint")
    if args.cmd is not None:
        config["Cmd"] = json_list(args.cmd, "--cmd")
    if args.user:
        config["User"] = args.user
    if args.label:
        config["Labels"] = key_value(args.label, "--label")

    try:  # fail fast on a compressed, empty or broken file
        with tarfile.open(args.rootfs, "r:") as t:
            t.next()
    except (OSError, tarfile.TarError) as e:
        sys.exit(f"docker_archive.py: {args.rootfs} is not an uncompressed tar: {e}")

    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    created = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    layer_sha = sha256_file(args.rootfs)
    layer_size = os.path.getsize(args.rootfs)
    layer_name = f"{layer_sha}/layer.tar"

    image = {
        "architecture": args.architecture,
        "os": "linux",
        "created": created,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_sha}"]},
        "history": [{"created": created, "created_by": args.created_by}],
    }
    config_bytes = json.dumps(image, sort_keys=True, separators=(",", ":")).encode()
    config_sha = hashlib.sha256(config_bytes).hexdigest()
    config_name = f"{config_sha}.json"
    manifest = [{"Config": config_name, "RepoTags": args.tag, "Layers": [layer_name]}]
    manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()

    tmp = f"{args.output}.partial.{os.getpid()}"
    try:
        with open(tmp, "wb") as raw, tarfile.open(fileobj=raw, mode="w:", format=tarfile.USTAR_FORMAT) as out:
            out.addfile(tar_info(f"{layer_sha}/", 0, epoch, 0o755, tarfile.DIRTYPE))
            with open(args.rootfs, "rb") as f:
                # addfile copies in chunks (shutil.copyfileobj), so the layer is never held in memory
                layer = HashingReader(f)
                out.addfile(tar_info(layer_name, layer_size, epoch), layer)
            out.addfile(tar_info(config_name, len(config_bytes), epoch), io.BytesIO(config_bytes))
            out.addfile(tar_info("manifest.json", len(manifest_bytes), epoch), io.BytesIO(manifest_bytes))
        if layer.h.hexdigest() != layer_sha:
            sys.exit("docker_archive.py: the rootfs tar changed while it was being copied")
        os.replace(tmp, args.output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)

    print(f"docker_archive.py: {args.output}: image sha256:{config_sha}, layer sha256:{layer_sha} "
          f"({layer_size} bytes), tags {', '.join(args.tag)}", file=sys.stderr)


if __name__ == "__main__":
    main()
