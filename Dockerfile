# syntax=docker/dockerfile:1
#
# smart-restore: the admission webhook service.
#
#   docker build -t smart-restore:0.1.0 .
#
# Three stages: `build` compiles TypeScript with every dependency; `deps` installs the production
# dependencies only; the runtime image is distroless (no shell, no package manager) with Node.js,
# dist/ and those dependencies, running as uid 65532.
#
# Read-only root filesystem: nothing is written at run time outside /tmp (an emptyDir in
# deploy/base/deployment.yaml). The service reads its certificate from /tls and its configuration
# from /config. The one place it writes a file on its own, .dev/tls/ca.crt, is only when it generates
# a development certificate (no SMART_RESTORE_TLS_CERT_FILE/KEY_FILE) and that write tolerates
# failure (src/service.ts loadTls); the Deployment always sets the certificate files. Do not run
# the image with store.type `local` and its default directory: that path creates .dev/backups
# under /app and fails on a read-only filesystem (deploy/ configures store.type s3).

# Node.js 24 is the current Active LTS. Build, deps and runtime use the same major version.
ARG NODE_MAJOR=24

FROM node:${NODE_MAJOR}-bookworm-slim AS build
WORKDIR /app
# Dependencies first, so source changes do not invalidate the npm ci layer.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# tsc -p tsconfig.build.json → dist/src/main.js (rootDir "."; CMD below runs that file).
RUN npm run build

FROM node:${NODE_MAJOR}-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only; no install scripts are needed by any of them.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

# Distroless Node.js, Debian 12 (glibc, like the bookworm build stages), `nonroot` variant.
FROM gcr.io/distroless/nodejs${NODE_MAJOR}-debian12:nonroot
WORKDIR /app
ENV NODE_ENV=production
# The distroless image's entrypoint is the node binary itself; reset it so CMD names node
# explicitly, found through PATH (/nodejs/bin is where distroless installs it).
ENV PATH=/nodejs/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENTRYPOINT []
# package.json: its "type": "module" makes Node load dist/**/*.js as ES modules.
COPY --from=deps /app/package.json ./package.json
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
# Owned by root and not writable by the service: the code cannot be changed at run time.
# Numeric uid:gid (distroless's nonroot), so Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8443 9090
CMD ["node", "dist/src/main.js"]
