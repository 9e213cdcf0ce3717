// Calling nba.v1.DecisionService from Node.js with @grpc/grpc-js and the .proto (docs/clients.md).
//
//   npm install && node client.js 127.0.0.1:50051
//
// Field names: proto-loader is given keepCase, so requests use the .proto's snake_case names
// (customer_id, consented_channels). A key the message does not have (consentedChannels here)
// is dropped without an error by the client library: the server never sees it.
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const protobuf = require("protobufjs");

const PROTO_DIR = path.resolve(__dirname, "../../proto");
const GOOGLE_DIR = path.resolve(require.resolve("google-proto-files/google/rpc/status.proto"), "../../..");
const includeDirs = [PROTO_DIR, GOOGLE_DIR];

const definition = protoLoader.loadSync("nba/v1/decision.proto", {
  keepCase: true, enums: String, longs: Number, defaults: true, oneofs: true, includeDirs,
});
const nba = grpc.loadPackageDefinition(definition).nba.v1;

// google.rpc.Status and its details (ErrorInfo, BadRequest), for reading errors.
const root = new protobuf.Root();
root.resolvePath = (_origin, target) => path.join(GOOGLE_DIR, target);
root.loadSync(["google/rpc/status.proto", "google/rpc/error_details.proto"]);
const Status = root.lookupType("google.rpc.Status");

function unpack(any) {
  const typeName = (any.type_url || any.typeUrl).split("/").pop();
  return { type: typeName, ...root.lookupType(typeName).toObject(root.lookupType(typeName).decode(any.value)) };
}

// The google.rpc.Status a failed call carries in its grpc-status-details-bin trailer.
function statusOf(err) {
  const [bytes] = err.metadata.get("grpc-status-details-bin");
  const status = Status.decode(bytes);
  return { code: status.code, message: status.message, details: status.details.map(unpack) };
}

function call(client, method, request) {
  return new Promise((resolve, reject) =>
    client[method](request, { deadline: Date.now() + 5000 }, (err, reply) => (err ? reject(err) : resolve(reply))));
}

async function main(target) {
  const client = new nba.DecisionService(target, grpc.credentials.createInsecure());
  const customer = {
    customer_id: "node-1", consented_channels: ["email"], timezone: "Europe/Paris",
    categorical_features: { segment: "loyal" }, numeric_features: { basket: 60 },
  };

  const { decision } = await call(client, "NextBestAction", customer);
  console.log("decision:", decision.event_id, decision.action.no_contact ? "no contact" :
    `${decision.action.offer_id} by ${decision.action.channel} at ${decision.action.send_slot}`,
    `p=${decision.probability.toFixed(3)}`, `value=${decision.expected_value.toFixed(2)} ${decision.currency_code}`);

  const ack = await call(client, "ReportOutcome", {
    event_id: decision.event_id, outcome_id: "node-open-1", type: "OUTCOME_TYPE_OPENED" });
  console.log("outcome acknowledged, duplicate:", ack.duplicate);

  try {
    await call(client, "NextBestAction", { ...customer, timezone: "Mars/Olympus" });
  } catch (err) {
    console.log("error:", grpc.status[err.code], JSON.stringify(statusOf(err)));
  }

  // A campaign: one stream, a bad record in the middle; every request gets its answer.
  const stream = client.NextBestActions();
  stream.on("data", (answer) => {
    if (answer.result === "decision") {
      console.log(`#${answer.position} ${answer.request_id}: ${answer.decision.action.channel || "no contact"}`);
    } else {
      const violations = answer.error.details.map(unpack).filter((d) => d.type === "google.rpc.BadRequest");
      console.log(`#${answer.position} ${answer.request_id}: error ${answer.error.code} ${answer.error.message}`,
        JSON.stringify(violations));
    }
  });
  const done = new Promise((resolve, reject) => { stream.on("end", resolve); stream.on("error", reject); });
  ["c-1", "", "c-3"].forEach((id, i) => stream.write({ ...customer, customer_id: id, request_id: `row-${i}` }));
  stream.end();
  await done;
  client.close();
}

main(process.argv[2] || "127.0.0.1:50051").catch((err) => { console.error(err); process.exit(1); });
