# taphold image: a build stage with the toolchain and DPDK headers (installed by the
# same scripts/setup.sh as a developer machine), and a runtime stage with exactly the
# Debian packages the binaries need: those providing every shared library they link
# (ldd), the DPDK drivers EAL loads at run time, and DPDK's host tools.
#
#   docker build -t taphold .
#   docker run --rm -v "$PWD/out:/out" taphold          # replay test-pcaps/mixed.pcap into /out
#   docker run --rm -v "$PWD/out:/out" taphold replay /opt/taphold/test-pcaps/orders.pcap /out
#   docker run --rm -v "$PWD/out:/out" taphold taphold-backup --no-huge -m 256 --no-pci -l 0 \
#       --vdev net_pcap0,rx_pcap=/out/backup.pcap,tx_pcap=/out/answers.pcap \
#       -- --config config/backup.example.yaml --exit-when-idle-ms 500
#   docker run --rm taphold help                        # the subcommands, binaries, configs
#
# `taphold -- ...` and `taphold-backup -- ...` with nothing before `--` get the EAL
# arguments of a machine without hugepages or NICs, as scripts/taphold.sh gives them.
# Real NICs need the host prepared (scripts/host-setup.sh, docs/deployment.md) and
# the container given them: --privileged (or --device /dev/vfio/vfio and the
# device's /dev/vfio/N, --cap-add IPC_LOCK,SYS_NICE, --ulimit memlock=-1),
# -v /dev/hugepages:/dev/hugepages, and --network host for mlx5.
#
# scripts/check-docker.sh fails when the runtime stage's package lists do not cover
# what the binaries link and load (`libs`: run here in the build stage, and by
# scripts/test.sh), or when the entrypoint does not run these examples (`entrypoint`).

FROM rust:1-bookworm AS build
# The binaries this image ships, each a workspace package of the same name. A new
# one (the arbiter, taphold-arbiter) is added here and nowhere else.
ARG BINARIES="taphold taphold-backup taphold-arbiter"
WORKDIR /src
COPY . .
RUN ./scripts/setup.sh --build-only \
 && cargo build --release $(for b in $BINARIES; do echo "-p $b"; done) \
 && mkdir -p /opt/taphold/bin \
 && for b in $BINARIES; do cp "target/release/$b" /opt/taphold/bin/; done \
 && scripts/check-docker.sh libs /opt/taphold/bin

FROM debian:bookworm-slim AS runtime
# Every shared library the binaries link, by the package providing it (ldd, dpkg -S;
# scripts/check-docker.sh checks this list both ways).
ARG RUNTIME_LINKED="libbsd0 libc6 libfdt1 libgcc-s1 libmd0 libnuma1 librte-bus-pci23 librte-bus-vdev23 librte-eal23 librte-ethdev23 librte-kvargs23 librte-mbuf23 librte-mempool23 librte-meter23 librte-net-ring23 librte-net23 librte-pci23 librte-ring23 librte-telemetry23"
# The drivers EAL loads itself from its plugin directory (dlopen, which ldd cannot
# see): the mempool's ring driver (every pool), net_pcap (replays), net_af_packet
# (kernel interfaces), and the NIC drivers of docs/deployment.md (ixgbe, i40e, ice;
# mlx5, which brings rdma-core's libibverbs).
ARG RUNTIME_DRIVERS="librte-mempool-ring23 librte-net-pcap23 librte-net-af-packet23 librte-net-ixgbe23 librte-net-i40e23 librte-net-ice23 librte-net-mlx5-23"
# dpdk-devbind.py, dpdk-hugepages.py (and python3 for them and dpdk-telemetry.py).
ARG RUNTIME_TOOLS="dpdk ca-certificates"
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      $RUNTIME_LINKED $RUNTIME_DRIVERS $RUNTIME_TOOLS \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/bin/dpdk-telemetry.py /usr/local/bin/dpdk-telemetry.py
COPY --from=build /opt/taphold/bin/ /usr/local/bin/
WORKDIR /opt/taphold
COPY config ./config
COPY crates/taphold-backup/backup.example.yaml ./config/backup.example.yaml
COPY test-pcaps ./test-pcaps
COPY scripts ./scripts
COPY tools ./tools
COPY docs ./docs
ENV TAPHOLD_BIN=/usr/local/bin/taphold
ENTRYPOINT ["/opt/taphold/tools/docker/entrypoint.sh"]
CMD ["replay"]
