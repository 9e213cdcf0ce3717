#!/bin/sh
# Go stubs from the .proto, into the first GOPATH entry (go_package: nbaengine.com/nba/gen/go/nba/v1).
# Debian: apt-get install golang-go golang-google-grpc-dev golang-google-genproto-dev \
#         protobuf-compiler protoc-gen-go protoc-gen-go-grpc
# google/rpc/status.proto: googleapis, or the copy `make proto-check` leaves in .proto-deps/.
set -eu
cd "$(dirname "$0")"
out="$(go env GOPATH | cut -d: -f1)/src"
mkdir -p "$out"
protoc -I ../../proto -I "${GOOGLEAPIS:-../../.proto-deps}" --go_out="$out" --go-grpc_out="$out" nba/v1/decision.proto
