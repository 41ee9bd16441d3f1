# syntax=docker/dockerfile:1
# The operator's image, for users with Docker (BuildKit):
#
#   docker build --build-arg VERSION=0.1.0 -t ghcr.io/dask/dask-operator:0.1.0 .
#
# Stage 1 builds the release binary with the pinned Rust; stage 2 is distroless (glibc, libgcc,
# CA certificates, a `nonroot` user 65532, no shell) with only the binary added. Both stages are
# Debian bookworm, so the binary runs against the glibc it was linked with.
# Without Docker (the local cluster), hack/images/build-operator-image.sh builds an equivalent image
# from a release binary built on the host; see hack/images/README.md.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Only what the build reads: the manifest, the lockfile, the sources, and benches/ (Cargo.toml
# declares a bench target, and cargo checks that its file exists even when it does not build it).
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
# The registry and target folders are cache mounts (kept between builds, absent from the layer), so
# the binary is copied out of target/ in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -D -m 0755 target/release/dask-operator /out/dask-operator

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=dev
COPY --from=build /out/dask-operator /usr/local/bin/dask-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/dask-operator"]
CMD ["run"]
LABEL org.opencontainers.image.title="dask-operator" \
      org.opencontainers.image.description="A Kubernetes operator for Dask clusters and jobs, a drop-in for dask-kubernetes" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"
