# Dockerfile -- multi-stage build of the emulator and its two clients on Debian bookworm.
# Build stage: the -dev packages and CMake. Runtime stage: only the shared libraries and the three binaries,
# run as a non-root user that may bind ports below 1024 (443) through a file capability.
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake pkg-config libssl-dev libjansson-dev \
      libmicrohttpd-dev libmosquitto-dev libcurl4-openssl-dev libsqlite3-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY common common
COPY emulator emulator
COPY device device
COPY service service
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
 && cmake --build /build -j"$(nproc)" \
 && cmake --install /build --prefix /out --strip

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl3 libjansson4 libmicrohttpd12 libmosquitto1 libcurl4 libsqlite3-0 \
      ca-certificates curl libcap2-bin \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/bin/ /usr/local/bin/
RUN setcap cap_net_bind_service=+ep /usr/local/bin/iothub-emulator \
 && useradd --system --uid 10001 --home-dir /data iothub \
 && mkdir -p /data && chown iothub:iothub /data
USER iothub
WORKDIR /data
VOLUME /data
EXPOSE 8883 443 1883 8080
ENTRYPOINT ["iothub-emulator"]
CMD ["--bind", "0.0.0.0", "--data-dir", "/data", "--hostname", "localhost", "--hostname", "iothub-emulator"]
