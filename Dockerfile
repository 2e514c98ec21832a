# syntax=docker/dockerfile:1
# One image for `shoal discover` and `shoal proxy`: JavaScript built from the TypeScript sources in a build
# stage (Node refuses to strip types under node_modules, and stripping costs memory), run on a slim Node 24.

FROM node:24-bookworm AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json cli.ts demo.ts ./
COPY cli/ cli/
COPY shared/ shared/
COPY discover/ discover/
COPY proxy/ proxy/
COPY dns/ dns/
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund \
 && test -f dist/cli.js

FROM node:24-bookworm-slim AS runtime
# tini is PID 1: it forwards SIGTERM to node (graceful drain) and reaps zombies.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 shoal \
 && useradd --system --uid 65532 --gid 65532 --home-dir /var/lib/shoal --shell /usr/sbin/nologin shoal \
 && mkdir -p /var/lib/shoal \
 && chown 65532:65532 /var/lib/shoal \
 && chmod 0750 /var/lib/shoal
WORKDIR /app
# Owned by root and not writable by the runtime user: only /var/lib/shoal (the sidecar's state file) is.
COPY --from=build --chown=0:0 /src/package.json ./package.json
COPY --from=build --chown=0:0 /src/node_modules ./node_modules
COPY --from=build --chown=0:0 /src/dist ./dist
ENV NODE_ENV=production
# Young generation capped at 1 MB semi-spaces: the sidecar's RSS at 1,000 rps is ~4 MB lower, ~12 MB lower after
# a burst, max rps unchanged within the noise (node bench/proxy.ts --sidecar-node-options=...). discover may override it.
ENV NODE_OPTIONS=--max-semi-space-size=1
VOLUME ["/var/lib/shoal"]
# discover HTTP, webhook, sidecar admin.
EXPOSE 6100 6443 65533
USER 65532:65532
ENTRYPOINT ["tini", "--", "node", "/app/dist/cli.js"]
CMD ["--help"]
