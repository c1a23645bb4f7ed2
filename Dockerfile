# The vit command in a container: Node 20 on Debian 12, with tini (Debian's package) as PID 1.
#
#   docker build -t vit .                                     # from a checkout
#   docker run --rm -v "$PWD/photos:/photos:ro" vit classify /photos -k 1
#
# Why tini: the kernel gives a namespace's PID 1 no default signal actions, so a bare `vit` as PID 1 would
# ignore a SIGTERM that comes before its batch loop catches it (while the model loads) and a second SIGTERM
# ("stop at once"), leaving only the SIGKILL after the grace period. tini is PID 1 instead, passes signals to
# vit and exits with vit's status (`tini -e 3` also maps vit's "finished, some inputs failed" to 0, as
# docs/kubernetes-indexed-job.yaml does).
#
# The build is the README's install: `npm ci` with the dev tools compiles dist/ and `npm pack` makes the
# tarball; the image holds that tarball's files and, from the lockfile, only the runtime dependencies
# (`npm ci --omit=dev`). ONNXRUNTIME_NODE_INSTALL=skip: onnxruntime-node's install script would otherwise
# fetch its CUDA provider from NuGet, outside the npm registry; its CPU binaries are in the npm package.
# scripts/ci-kubernetes.sh runs the second stage's commands and the image's entry point outside Docker.

FROM node:20-bookworm-slim AS build
ENV ONNXRUNTIME_NODE_INSTALL=skip
WORKDIR /src
COPY . .
RUN npm ci && mkdir /tmp/pack && npm pack --pack-destination /tmp/pack && cp package-lock.json /tmp/pack/

FROM node:20-bookworm-slim
ENV ONNXRUNTIME_NODE_INSTALL=skip
RUN apt-get update && apt-get install -y --no-install-recommends tini && rm -rf /var/lib/apt/lists/*
COPY --from=build /tmp/pack/ /tmp/pack/
WORKDIR /opt/vit
# The package's own `prepare` (the TypeScript build) has nothing to do here: dist/ is in the tarball.
RUN tar xzf /tmp/pack/vit-cli-*.tgz --strip-components=1 && mv /tmp/pack/package-lock.json . && rm -r /tmp/pack \
  && npm pkg delete scripts.prepare && npm ci --omit=dev && npm cache clean --force \
  && ln -s /opt/vit/bin/vit.js /usr/local/bin/vit
USER node
WORKDIR /home/node
ENTRYPOINT ["/usr/bin/tini", "--", "vit"]
CMD ["--help"]
