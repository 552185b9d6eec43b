// Publishes user-registered events through the gateway, keyed by user id.
const { connect, metadata, toStruct, option } = require("./client");

const gateway = connect();
const topic = option("topic", "user-registered");
const count = Number(option("count", "3"));

async function main() {
  for (let userId = 1; userId <= count; userId++) {
    const answer = await new Promise((resolve, reject) =>
      gateway.PublishEvent(
        {
          topic,
          key: String(userId),
          event: {
            type: "user.registered",
            source: "/node-user-service",
            json: toStruct({ user_id: userId, email: `node${userId}@example.com` }),
          },
        },
        metadata(),
        { deadline: Date.now() + 10000 },
        (error, response) => (error ? reject(error) : resolve(response)),
      ),
    );
    console.log(`published user ${userId} as ${answer.event_id} -> partition ${answer.partition} offset ${answer.offset}`);
  }
  gateway.close();
}

main().catch((error) => {
  console.error(`publish failed: ${error.code} ${error.details}`);
  process.exit(1);
});
