# syntax=docker/dockerfile:1
# plant-telemetry: one image for every process (`iot start | migrate | worker | ingest mqtt | simulate | token`).
#   docker build -t plant-telemetry .
#   docker run --rm plant-telemetry --help

ARG NODE_IMAGE=node:20-bookworm-slim

# --- build: all dependencies, compile TypeScript, then drop dev dependencies ----------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Lockfile first so the dependency layer is reused while only sources change.
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY workers ./workers
# test/ and bench/ are not in the build context (.dockerignore); tsc compiles what is there.
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

# --- runtime ----------------------------------------------------------------------------------------
FROM ${NODE_IMAGE}
# HOST: in a container the API must listen beyond loopback to be reachable through a published port.
# DATA_DIR: writable state (embedded PostgreSQL, generated JWT secret) for when the image is run
# without DATABASE_URL / JWT_SECRET; unused by docker-compose.yml.
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    DATA_DIR=/data
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The migrate runner reads db/migrations and sql/ relative to the project root (/app).
COPY db ./db
COPY sql ./sql
RUN mkdir -p /data && chown node:node /data
# The code stays root-owned and read-only to the process.
USER node
EXPOSE 5000
ENTRYPOINT ["node", "dist/src/cli/main.js"]
CMD ["start"]
