// Calling nba.v1.DecisionService from Go with stubs generated from the .proto (docs/clients.md).
//
//	go run . 127.0.0.1:50051
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	nbav1 "nbaengine.com/nba/gen/go/nba/v1"
)

func main() {
	target := "127.0.0.1:50051"
	if len(os.Args) > 1 {
		target = os.Args[1]
	}
	conn, err := grpc.Dial(target, grpc.WithInsecure()) // credentials/insecure on grpc-go >= 1.34
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := nbav1.NewDecisionServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	customer := &nbav1.NextBestActionRequest{
		CustomerId: "go-1", ConsentedChannels: []string{"email"}, Timezone: "Europe/Paris",
		CategoricalFeatures: map[string]string{"segment": "loyal"},
	}
	reply, err := client.NextBestAction(ctx, customer)
	if err != nil {
		log.Fatal(err)
	}
	d := reply.GetDecision()
	fmt.Printf("decision: %s %s by %s at %s, p=%.3f\n", d.GetEventId(), d.GetAction().GetOfferId(),
		d.GetAction().GetChannel(), d.GetAction().GetSendSlot(), d.GetProbability())

	if _, err := client.ReportOutcome(ctx, &nbav1.ReportOutcomeRequest{
		EventId: d.GetEventId(), OutcomeId: "go-open-1", Type: nbav1.OutcomeType_OUTCOME_TYPE_OPENED}); err != nil {
		log.Fatal(err)
	}

	// An error's details: ErrorInfo's reason, BadRequest's field violations.
	_, err = client.NextBestAction(ctx, &nbav1.NextBestActionRequest{CustomerId: "go-2", Timezone: "Mars/Olympus"})
	st := status.Convert(err)
	fmt.Printf("error: %s %q\n", st.Code(), st.Message())
	for _, detail := range st.Details() {
		switch t := detail.(type) {
		case *errdetails.ErrorInfo:
			fmt.Printf("  reason %s (domain %s)\n", t.GetReason(), t.GetDomain())
		case *errdetails.BadRequest:
			for _, v := range t.GetFieldViolations() {
				fmt.Printf("  field %s: %s\n", v.GetField(), v.GetDescription())
			}
		}
	}

	// A campaign on one stream, a bad record in the middle: every request gets its answer.
	stream, err := client.NextBestActions(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for i, id := range []string{"go-3", "", "go-5"} {
		if err := stream.Send(&nbav1.NextBestActionsRequest{CustomerId: id, ConsentedChannels: []string{"email"},
			RequestId: fmt.Sprintf("row-%d", i)}); err != nil {
			log.Fatal(err)
		}
	}
	stream.CloseSend()
	for {
		answer, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		if e := answer.GetError(); e != nil {
			fmt.Printf("#%d %s: error %s\n", answer.GetPosition(), answer.GetRequestId(), status.FromProto(e).Message())
		} else {
			fmt.Printf("#%d %s: %s\n", answer.GetPosition(), answer.GetRequestId(), answer.GetDecision().GetAction().GetChannel())
		}
	}
}
