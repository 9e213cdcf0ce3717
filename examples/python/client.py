"""Calling nba.v1.DecisionService from Python with the project's client (docs/clients.md).

    .venv/bin/python examples/python/client.py 127.0.0.1:50051

(A client made from the .proto alone, with protoc's stubs and grpcio-status: see
tests/proto_only_client.py.)
"""

import sys

import grpc

from engine.client import NBAClient, failure_of
from engine.domain import DecisionRequest


def main(target: str) -> None:
    with NBAClient(target) as nba:
        nba.wait_ready()
        d = nba.next_best_action("py-1", consented_channels=["email"], timezone="Europe/Paris",
                                 categorical_features={"segment": "loyal"})
        print(f"decision: {d.event_id} {d.action.offer_id} by {d.action.channel} at {d.action.send_slot}, "
              f"p={d.probability:.3f}")
        nba.report_outcome(d.event_id, "py-open-1", "OPENED")

        try:
            nba.next_best_action("py-2", timezone="Mars/Olympus")
        except grpc.RpcError as error:
            failure = failure_of(error)  # the google.rpc.Status in the trailer
            print(f"error: {failure.code.name} {failure.message!r}")
            print(f"  reason {failure.reason}, fields {failure.violations}")

        # A campaign on one stream, a bad record in the middle: every request gets its answer.
        rows = [(f"row-{i}", DecisionRequest(customer_id=cid, consented_channels=("email",)))
                for i, cid in enumerate(["py-3", "", "py-5"])]
        for answer in nba.stream(rows):
            if answer.failure is not None:
                print(f"#{answer.position} {answer.request_id}: error {answer.failure.message}")
            else:
                print(f"#{answer.position} {answer.request_id}: {answer.decision.action.channel}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051")
