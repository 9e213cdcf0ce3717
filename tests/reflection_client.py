"""A gRPC client that knows nothing of our .proto: it learns the contract by server reflection,
the way grpcurl, evans or Postman do. Run as a separate process by test_reflection.py, so that
none of the project's stubs are imported.

    python reflection_client.py HOST:PORT   -> prints one JSON line of what it saw
"""

import json
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main(target: str) -> None:
    channel = grpc.insecure_channel(target)
    database = ProtoReflectionDescriptorDatabase(channel)
    services = database.get_services()
    pool = descriptor_pool.DescriptorPool(database)
    service = pool.FindServiceByName("nba.v1.DecisionService")

    def call(method_name, payload):
        method = service.methods_by_name[method_name]
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        rpc = channel.unary_unary(f"/{service.full_name}/{method.name}",
                                  request_serializer=request_class.SerializeToString,
                                  response_deserializer=response_class.FromString)
        try:
            reply = rpc(json_format.ParseDict(payload, request_class()), timeout=10)
            return {"code": "OK", "reply": json_format.MessageToDict(reply)}
        except grpc.RpcError as err:
            return {"code": err.code().name, "details": err.details()}

    decision = call("NextBestAction", {"customer_id": "refl-1", "consented_channels": ["email"],
                                       "timezone": "Europe/Paris",
                                       "categorical_features": {"segment": "new"}})
    event_id = decision.get("reply", {}).get("decision", {}).get("eventId", "")
    outcome = call("ReportOutcome", {"event_id": event_id, "outcome_id": "o-1", "type": "OUTCOME_TYPE_OPENED"})
    empty = call("NextBestAction", {"customer_id": ""})
    print(json.dumps({"services": services, "methods": [m.name for m in service.methods],
                      "decision": decision, "outcome": outcome, "empty": empty,
                      "v1_services": list_services_v1(channel)}))


def list_services_v1(channel) -> list[str]:
    """The services listed by reflection v1 (grpc.reflection.v1), which newer tools ask first.
    Its messages are v1alpha's in another package: the same bytes."""
    from grpc_reflection.v1alpha import reflection_pb2

    rpc = channel.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                                response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    (reply,) = rpc(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    return [s.name for s in reply.list_services_response.service]


if __name__ == "__main__":
    main(sys.argv[1])
