#!/bin/sh
# Java stubs from the .proto, compiled and run against a server, with Debian's gRPC Java:
#   apt-get install default-jdk protobuf-compiler libgrpc-java protobuf-compiler-grpc-java-plugin \
#                   libprotobuf-java libnetty-java libperfmark-java libguava-java libgeronimo-annotation-1.3-spec-java
# google/rpc/*.proto: googleapis, or the copies `make proto-check` leaves in .proto-deps/ (status)
# and googleapis-common-protos installs (error_details); with Maven, use proto-google-common-protos.
set -eu
cd "$(dirname "$0")"
GOOGLEAPIS="${GOOGLEAPIS:-$(../../.venv/bin/python -c 'import google.rpc.status_pb2 as s, pathlib; print(pathlib.Path(s.__file__).parents[2])')}"
build="${BUILD:-/tmp/nba-java-client}"
rm -rf "$build" && mkdir -p "$build/src" "$build/classes"
protoc -I ../../proto -I "$GOOGLEAPIS" --java_out="$build/src" --grpc-java_out="$build/src" \
    --plugin=protoc-gen-grpc-java=/usr/bin/grpc_java_plugin \
    nba/v1/decision.proto google/rpc/status.proto google/rpc/error_details.proto
cp=$(ls /usr/share/java/grpc-*.jar /usr/share/java/protobuf.jar /usr/share/java/guava.jar \
        /usr/share/java/netty-*.jar /usr/share/java/perfmark-api.jar /usr/share/java/jsr305.jar \
        /usr/share/java/error_prone_annotations.jar /usr/share/java/geronimo-annotation-1.3-spec.jar 2>/dev/null | grep -v -- '-[0-9][0-9.]*\(Final\)\?\.jar$' | tr '\n' ':')
javac -nowarn -d "$build/classes" -cp "$cp" $(find "$build/src" -name '*.java') Client.java 2>&1 | grep -v '^Note:' || true
java -cp "$build/classes:$cp" Client "${1:-127.0.0.1:50051}"
