# Multi-stage build of the ingestor: a static binary in a minimal, non-root image.
# Not exercised by the test suite (no Docker engine runs where it is developed); see README.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Empty: --version reports the build info (module version or VCS revision), "dev" without one.
ARG VERSION=
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath \
      -ldflags "-s -w -X main.Version=${VERSION}" \
      -o /out/ingestor ./cmd/ingestor

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ingestor /usr/local/bin/ingestor
COPY config/ingestor.yaml /etc/ingestor/ingestor.yaml
USER nonroot:nonroot
EXPOSE 4195
ENTRYPOINT ["/usr/local/bin/ingestor"]
CMD ["run", "/etc/ingestor/ingestor.yaml"]
