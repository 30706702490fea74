# syntax=docker/dockerfile:1
#
# smart-restore: the admission webhook service.
#
#   docker build -t smart-restore:0.1.0 .
#
# Two stages: `build` installs every dependency and runs `npm run build` (scripts/build.mjs: one
# esbuild bundle of the service and the CLI, dependencies included, minified, with source maps);
# the runtime image is distroless (no shell, no package manager) with Node.js and that dist/ alone —
# no node_modules: the bundle carries what it uses — running as uid 65532. `npm start` and
# `npm run bench` run the same build (test/deploy/image.test.ts holds them together).

# Read-only root filesystem: nothing is written at run time outside /tmp (an emptyDir in
# deploy/base/deployment.yaml). The service reads its certificate from /tls and its configuration
# from /config. The one place it writes a file on its own, .dev/tls/ca.crt, is only when it generates
# a development certificate (no SMART_RESTORE_TLS_CERT_FILE/KEY_FILE) and that write tolerates
# failure (src/service.ts loadTls); the Deployment always sets the certificate files. Do not run
# the image with store.type `local` and its default directory: that path creates .dev/backups
# under /app and fails on a read-only filesystem (deploy/ configures store.type s3).

# Node.js 24 is the current Active LTS. Build and runtime use the same major version.
ARG NODE_MAJOR=24

FROM node:${NODE_MAJOR}-bookworm-slim AS build
WORKDIR /app
# Dependencies first, so source changes do not invalidate the npm ci layer.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
# tsconfig.json: esbuild reads its compiler options, as it does for `npm run build` on a checkout.
COPY tsconfig.json ./
COPY scripts/build.mjs ./scripts/
COPY src ./src
# scripts/build.mjs → dist/src/main.js (the CMD below), dist/src/cli/main.js, dist/chunks/,
# dist/package.json ("type": "module") and dist/THIRD-PARTY-LICENSES.txt.
RUN npm run build

# Distroless Node.js, Debian 12 (glibc, like the bookworm build stage), `nonroot` variant.
FROM gcr.io/distroless/nodejs${NODE_MAJOR}-debian12:nonroot
WORKDIR /app
ENV NODE_ENV=production
# The distroless image's entrypoint is the node binary itself; reset it so CMD names node
# explicitly, found through PATH (/nodejs/bin is where distroless installs it).
ENV PATH=/nodejs/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENTRYPOINT []
# The build, and nothing else: dependencies are inside the bundle, and dist/package.json makes Node
# load dist/**/*.js as ES modules.
COPY --from=build /app/dist ./dist
# Owned by root and not writable by the service: the code cannot be changed at run time.
# Numeric uid:gid (distroless's nonroot), so Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8443 9090
# The CLI is in the image too: `kubectl exec deploy/smart-restore -- node dist/src/cli/main.js status`.
CMD ["node", "dist/src/main.js"]
