# One image with the four services, the read side (history) and sagactl; docker-compose.yml picks
# the binary per service.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends pkg-config zlib1g-dev libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
        -p order-service -p payment-service -p inventory-service -p shipping-service \
        -p history-service -p sagactl

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl libssl3 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/order-service /src/target/release/payment-service \
     /src/target/release/inventory-service /src/target/release/shipping-service \
     /src/target/release/history-service /src/target/release/sagactl /usr/local/bin/
USER 65534:65534
