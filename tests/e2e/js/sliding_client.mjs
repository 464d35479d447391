// Runs matrix-js-sdk's SlidingSync (simplified sliding sync, MSC4186) against a test
// server and reports what it sees as JSON lines on stdout. Commands arrive as lines on
// stdin: "subscribe <roomId>", "order", "quit".
import readline from "node:readline";

// matrix-js-sdk 37.8 calls Promise.withResolvers, which Node only has from version 22.
if (!Promise.withResolvers) {
  Promise.withResolvers = function withResolvers() {
    let resolve, reject;
    const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
    return { promise, resolve, reject };
  };
}
const sdk = await import("matrix-js-sdk");
const { SlidingSync, SlidingSyncEvent, SlidingSyncState, ExtensionState } = await import(
  "matrix-js-sdk/lib/sliding-sync.js"
);

const [baseUrl, userId, accessToken, deviceId] = process.argv.slice(2);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const client = sdk.createClient({ baseUrl, userId, accessToken, deviceId });
const lists = new Map([
  ["recent", {
    ranges: [[0, 2]],
    timeline_limit: 5,
    required_state: [["m.room.name", ""], ["m.room.member", "$LAZY"]],
  }],
]);
const slidingSync = new SlidingSync(
  baseUrl, lists, { timeline_limit: 20, required_state: [["*", "*"]] }, client, 2000,
);

// The SDK registers its own e2ee extension only with its crypto stack running; this
// test's client has none, so the device-list part of the extension is observed here,
// through the SDK's public extension interface.
slidingSync.registerExtension({
  name: () => "e2ee",
  when: () => ExtensionState.PreProcess,
  onRequest: async () => ({ enabled: true }),
  onResponse: async (data) => {
    const lists = data.device_lists ?? {};
    if ((lists.changed ?? []).length || (lists.left ?? []).length) {
      out({ kind: "device_lists", changed: lists.changed ?? [], left: lists.left ?? [] });
    }
    out({ kind: "key_counts", counts: data.device_one_time_keys_count ?? null });
  },
});

slidingSync.on(SlidingSyncEvent.Lifecycle, (state, resp, err) => {
  if (err) out({ kind: "error", status: err.httpStatus ?? null, message: String(err) });
  if (state !== SlidingSyncState.Complete || !resp) return;
  const ops = {};
  for (const [key, list] of Object.entries(resp.lists ?? {})) {
    ops[key] = { count: list.count, room_ids: (list.ops ?? []).flatMap((op) => op.room_ids ?? []) };
  }
  out({ kind: "response", pos: resp.pos, lists: ops, rooms: Object.keys(resp.rooms ?? {}) });
});
client.on(sdk.ClientEvent.Sync, (state) => out({ kind: "sync", state }));
client.on(sdk.RoomEvent.Timeline, (event, room, toStart) => {
  if (toStart) return;
  out({
    kind: "timeline", room: room?.roomId, type: event.getType(), id: event.getId(),
    body: event.getContent()?.body ?? null,
  });
});
client.on(sdk.ClientEvent.ToDeviceEvent, (event) => {
  out({ kind: "to_device", type: event.getType(), sender: event.getSender(), content: event.getContent() });
});

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  const [cmd, arg] = line.trim().split(" ");
  if (cmd === "subscribe") {
    slidingSync.modifyRoomSubscriptions(new Set([arg]));
  } else if (cmd === "order") {
    const rooms = client.getRooms().map((r) => ({ id: r.roomId, stamp: r.getBumpStamp() ?? 0, name: r.name }));
    rooms.sort((a, b) => b.stamp - a.stamp);
    out({ kind: "order", rooms });
  } else if (cmd === "quit") {
    slidingSync.stop();
    client.stopClient();
    process.exit(0);
  }
});

await client.startClient({ slidingSync });
