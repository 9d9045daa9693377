# taphold image: a build stage with the toolchain and DPDK headers (installed
# by the same scripts/setup.sh as a developer machine), and a runtime stage
# with only DPDK's runtime libraries and libpcap.
#
#   docker build -t taphold .
#   docker run --rm -v "$PWD/out:/out" taphold \
#       /opt/taphold/scripts/replay.sh /opt/taphold/test-pcaps/mixed.pcap /out
# (the DPDK runtime needs --privileged or hugepage/device mounts for real NICs.)

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN ./scripts/setup.sh \
 && cargo build --release -p taphold

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends dpdk libpcap0.8 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/taphold
COPY --from=build /src/target/release/taphold /usr/local/bin/taphold
COPY config ./config
COPY test-pcaps ./test-pcaps
COPY scripts/replay.sh ./scripts/replay.sh
ENV TAPHOLD_BIN=/usr/local/bin/taphold
ENTRYPOINT ["/usr/local/bin/taphold"]
