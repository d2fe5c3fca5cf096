# syntax=docker/dockerfile:1
# Multi-stage build: a static planetkube binary on a distroless, non-root base.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY controllers/ controllers/
COPY internal/ internal/
COPY main.go ./
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/planetkube .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/planetkube /planetkube
USER 65532:65532
ENTRYPOINT ["/planetkube"]
CMD ["manager"]
