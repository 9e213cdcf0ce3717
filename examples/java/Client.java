// Calling nba.v1.DecisionService from Java with stubs generated from the .proto (docs/clients.md).
//
//   ./run.sh 127.0.0.1:50051
import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import com.nbaengine.nba.v1.Decision;
import com.nbaengine.nba.v1.DecisionServiceGrpc;
import com.nbaengine.nba.v1.NextBestActionRequest;
import com.nbaengine.nba.v1.NextBestActionsRequest;
import com.nbaengine.nba.v1.NextBestActionsResponse;
import com.nbaengine.nba.v1.OutcomeType;
import com.nbaengine.nba.v1.ReportOutcomeRequest;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.StreamObserver;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

public class Client {
  public static void main(String[] args) throws Exception {
    String target = args.length > 0 ? args[0] : "127.0.0.1:50051";
    ManagedChannel channel = ManagedChannelBuilder.forTarget(target).usePlaintext().build();
    DecisionServiceGrpc.DecisionServiceBlockingStub stub =
        DecisionServiceGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS);

    NextBestActionRequest customer = NextBestActionRequest.newBuilder()
        .setCustomerId("java-1").addConsentedChannels("email").setTimezone("Europe/Paris")
        .putCategoricalFeatures("segment", "loyal").build();
    Decision d = stub.nextBestAction(customer).getDecision();
    System.out.printf("decision: %s %s by %s at %s, p=%.3f%n", d.getEventId(), d.getAction().getOfferId(),
        d.getAction().getChannel(), d.getAction().getSendSlot(), d.getProbability());
    stub.reportOutcome(ReportOutcomeRequest.newBuilder().setEventId(d.getEventId())
        .setOutcomeId("java-open-1").setType(OutcomeType.OUTCOME_TYPE_OPENED).build());

    // An error's details: ErrorInfo's reason, BadRequest's field violations.
    try {
      stub.nextBestAction(customer.toBuilder().setTimezone("Mars/Olympus").build());
    } catch (StatusRuntimeException e) {
      com.google.rpc.Status status = StatusProto.fromThrowable(e);
      System.out.printf("error: %s %s%n", e.getStatus().getCode(), status.getMessage());
      printDetails(status);
    }

    // A campaign on one stream, a bad record in the middle: every request gets its answer.
    CountDownLatch done = new CountDownLatch(1);
    StreamObserver<NextBestActionsRequest> requests = DecisionServiceGrpc.newStub(channel)
        .nextBestActions(new StreamObserver<NextBestActionsResponse>() {
          public void onNext(NextBestActionsResponse answer) {
            if (answer.hasError()) {
              System.out.printf("#%d %s: error %s%n", answer.getPosition(), answer.getRequestId(),
                  answer.getError().getMessage());
            } else {
              System.out.printf("#%d %s: %s%n", answer.getPosition(), answer.getRequestId(),
                  answer.getDecision().getAction().getChannel());
            }
          }
          public void onError(Throwable t) { t.printStackTrace(); done.countDown(); }
          public void onCompleted() { done.countDown(); }
        });
    String[] ids = {"java-3", "", "java-5"};
    for (int i = 0; i < ids.length; i++) {
      requests.onNext(NextBestActionsRequest.newBuilder().setCustomerId(ids[i]).addConsentedChannels("email")
          .setRequestId("row-" + i).build());
    }
    requests.onCompleted();
    done.await(30, TimeUnit.SECONDS);
    channel.shutdown().awaitTermination(5, TimeUnit.SECONDS);
  }

  static void printDetails(com.google.rpc.Status status) throws InvalidProtocolBufferException {
    for (Any detail : status.getDetailsList()) {
      if (detail.is(ErrorInfo.class)) {
        ErrorInfo info = detail.unpack(ErrorInfo.class);
        System.out.printf("  reason %s (domain %s)%n", info.getReason(), info.getDomain());
      } else if (detail.is(BadRequest.class)) {
        for (BadRequest.FieldViolation v : detail.unpack(BadRequest.class).getFieldViolationsList()) {
          System.out.printf("  field %s: %s%n", v.getField(), v.getDescription());
        }
      }
    }
  }
}
