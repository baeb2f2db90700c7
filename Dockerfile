# Dockerfile -- multi-stage build of the emulator and its two clients on Debian bookworm.
# Build stage: the -dev packages and CMake; only the program sources are copied (no tests/ or bench/, so
# BUILD_TESTING and BUILD_BENCH are off). Runtime stage: exactly the Debian packages that own the shared
# libraries the three binaries link (worked out in the build stage with ldd + dpkg -S), curl for the healthcheck,
# and the binaries, run as a non-root user that may bind ports below 1024 (443) through a file capability.
#
# Adding a library (e.g. libsqlite3-dev, libqpid-proton11-dev) is one line: its -dev package in BUILD_PACKAGES
# below. Its runtime package (libsqlite3-0, libqpid-proton11...) follows from what the binaries link.
FROM debian:bookworm-slim AS build
ARG BUILD_PACKAGES="\
    build-essential cmake pkg-config \
    libssl-dev \
    libjansson-dev \
    libmicrohttpd-dev \
    libmosquitto-dev \
    libcurl4-openssl-dev \
    libsqlite3-dev \
    libqpid-proton11-dev \
    "
RUN apt-get update \
 && apt-get install -y --no-install-recommends $BUILD_PACKAGES \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY common common
COPY emulator emulator
COPY device device
COPY service service
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DBUILD_BENCH=OFF \
 && cmake --build /build -j"$(nproc)" \
 && cmake --install /build --prefix /out --strip
# The runtime packages: the owner of every library ldd resolves, minus libc6 (already in the base image).
# dpkg -S matches by file name because merged-/usr paths may differ from the ones a package registered.
RUN for lib in $(ldd /out/bin/* | awk '/=> \//{print $3}' | sort -u); do \
        dpkg -S "*/$(basename "$lib")" | cut -d: -f1; \
    done | sort -u | grep -v -x -e libc6 -e '.*-dev' > /out/runtime-packages \
 && test -s /out/runtime-packages && cat /out/runtime-packages

FROM debian:bookworm-slim
COPY --from=build /out/runtime-packages /tmp/runtime-packages
RUN apt-get update \
 && apt-get install -y --no-install-recommends $(cat /tmp/runtime-packages) ca-certificates curl libcap2-bin \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages
COPY --from=build /out/bin/ /usr/local/bin/
RUN setcap cap_net_bind_service=+ep /usr/local/bin/iothub-emulator \
 && useradd --system --uid 10001 --home-dir /data iothub \
 && mkdir -p /data && chown iothub:iothub /data
USER iothub
WORKDIR /data
VOLUME /data
EXPOSE 8883 443 5671 1883 5672 8080
HEALTHCHECK --interval=2s --timeout=2s --retries=30 CMD ["curl", "-fsS", "http://127.0.0.1:8080/health"]
ENTRYPOINT ["iothub-emulator"]
CMD ["--bind", "0.0.0.0", "--data-dir", "/data", "--hostname", "127.0.0.1", "--hostname", "iothub-emulator"]
