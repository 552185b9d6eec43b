// Consumes user-registered events through the gateway as a consumer group
// with MANUAL acknowledgements, and stops after --count events.
const { connect, metadata, fromStruct, option } = require("./client");

const gateway = connect();
const count = Number(option("count", "3"));
let subscriptionId = null;
let handled = 0;

const stream = gateway.Subscribe({
  topics: [option("topic", "user-registered")],
  group: option("group", "node-example"),
  start_from: "START_FROM_EARLIEST",
  ack_mode: "ACK_MODE_MANUAL",
}, metadata());

stream.on("data", (message) => {
  if (message.kind === "subscribed") {
    subscriptionId = message.subscribed.subscription_id;
    console.log(`subscribed as ${subscriptionId}`);
    return;
  }
  if (message.kind !== "delivery") return;
  const delivery = message.delivery;
  const user = fromStruct(delivery.event.json);
  console.log(`received user ${user.user_id} <${user.email}> as ${delivery.event.id} attempt ${delivery.attempt}`);
  gateway.Acknowledge({ subscription_id: subscriptionId, ack_ids: [delivery.ack_id] }, metadata(), (error) => {
    if (error) {
      console.error(`acknowledge failed: ${error.details}`);
      process.exit(1);
    }
    handled += 1;
    if (handled >= count) {
      stream.cancel();
      gateway.close();
    }
  });
});
stream.on("error", (error) => {
  if (error.code !== 1) { // 1 = CANCELLED, our own stop
    console.error(`subscription failed: ${error.code} ${error.details}`);
    process.exit(1);
  }
});
