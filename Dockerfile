# syntax=docker/dockerfile:1
# relay365's container image (docs/operations.md, "In a container"). Three stages:
#   build       compiles the TypeScript with the devDependencies (npm ci runs `prepare`, which runs tsc);
#   production  installs the runtime dependencies only (npm ci --omit=dev) beside that dist/, where the
#               compiler better-sqlite3 may need is at hand;
#   (final)     copies the result into a clean Node image, with no compiler, running as the `node` user.
# test/e2e/install.test.ts runs every RUN line of the first two stages, with this layout, in a clean
# folder and starts the result; no image is built by the tests.
ARG NODE_VERSION=24

FROM node:${NODE_VERSION}-bookworm-slim AS build
# better-sqlite3 downloads a prebuilt binary for this Node and CPU when one exists, else builds from source.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY packaging ./packaging
COPY src ./src
RUN npm ci --no-audit --no-fund

FROM build AS production
# The data folder; the final image gives it to the runtime user, and a new named volume takes its owner.
WORKDIR /var/lib/relay365
WORKDIR /app
COPY package.json package-lock.json LICENSE ./
COPY packaging ./packaging
COPY --from=build /build/dist ./dist
# No TypeScript here: `prepare` keeps the dist/ copied above.
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM node:${NODE_VERSION}-bookworm-slim
# RELAY365_CONFIG: the config file to mount (or set RELAY365_CONFIG= and give RELAY365_* variables only).
# STATE_DIRECTORY: the default dataDir when the config sets none, as under systemd's StateDirectory=.
ENV NODE_ENV=production \
    RELAY365_CONFIG=/etc/relay365/relay365.yaml \
    STATE_DIRECTORY=/var/lib/relay365
COPY --from=production /app /app
COPY --from=production --chown=node:node /var/lib/relay365 /var/lib/relay365
USER node
VOLUME /var/lib/relay365
# SMTP (smtp.listeners, default port 2525) and HTTP (http.port, default 8025); both must listen on
# 0.0.0.0 in the config (or RELAY365_HTTP__HOST / RELAY365_SMTP__LISTENERS) to be reached from outside.
EXPOSE 2525 8025
# GET /healthz answers 200 (without the HTTP front door: the first SMTP listener accepts).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
  CMD ["node", "/app/dist/cli/main.js", "service", "ready", "--timeout", "5"]
ENTRYPOINT ["node", "/app/dist/cli/main.js"]
CMD ["serve"]
