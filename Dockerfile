# syntax=docker/dockerfile:1
# The production image without Blubber (.pipeline/blubber.yaml is the
# Wikimedia build): a static binary and the CA bundle on scratch, run as
# nobody.
#
#   docker build -t pretrain-detector .
#   docker run --rm -p 9797:9797 pretrain-detector run --kafka.brokers=kafka:9092
FROM golang:1.26 AS build
WORKDIR /src
ENV CGO_ENABLED=0
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -trimpath -o /out/pretrain-detector ./cmd/detector

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/pretrain-detector /usr/bin/pretrain-detector
USER 65534:65534
EXPOSE 9797
ENTRYPOINT ["/usr/bin/pretrain-detector"]
CMD ["run"]
