// Runs a real matrix-js-sdk client against a test server and reports what its sync loop
// sees as JSON lines on stdout. Commands arrive as lines on stdin: "stop", "start", "quit".
import readline from "node:readline";

import "./node20.mjs";
import * as sdk from "matrix-js-sdk";

const [baseUrl, userId, accessToken, deviceId] = process.argv.slice(2);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const client = sdk.createClient({ baseUrl, userId, accessToken, deviceId });
client.on(sdk.ClientEvent.Sync, (state) => out({ kind: "sync", state }));
client.on(sdk.RoomEvent.Timeline, (event, room, toStart) => {
  if (toStart) return;
  out({
    kind: "timeline", room: room?.roomId, type: event.getType(), sender: event.getSender(),
    body: event.getContent()?.body ?? null, stateKey: event.getStateKey() ?? null,
    content: event.getContent(),
  });
});
client.on(sdk.RoomMemberEvent.Typing, (event, member) => {
  out({ kind: "typing", room: member.roomId, user: member.userId, typing: member.typing });
});
client.on(sdk.RoomEvent.Receipt, (event, room) => {
  out({ kind: "receipt", room: room.roomId, content: event.getContent() });
});
client.on(sdk.UserEvent.Presence, (event, user) => {
  if (user) out({ kind: "presence", user: user.userId, presence: user.presence });
});

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", async (line) => {
  const cmd = line.trim();
  if (cmd === "stop") {
    client.stopClient();
    out({ kind: "stopped" });
  } else if (cmd === "start") {
    await client.startClient({ initialSyncLimit: 20 });
  } else if (cmd === "quit") {
    client.stopClient();
    process.exit(0);
  }
});
await client.startClient({ initialSyncLimit: 20 });
