// Runs a real matrix-js-sdk client with thread support against a test server: after its
// first sync it lists the room's threads the way the SDK does (/threads, then each
// thread's /relations) and reports them, and the content shown for an edited event, as
// one JSON line on stdout.

import "./node20.mjs";
import * as sdk from "matrix-js-sdk";

const [baseUrl, userId, accessToken, deviceId, roomId, editedId] = process.argv.slice(2);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const client = sdk.createClient({ baseUrl, userId, accessToken, deviceId });
client.on(sdk.ClientEvent.Sync, async (state) => {
  if (state !== "PREPARED") return;
  try {
    const room = client.getRoom(roomId);
    await room.createThreadsTimelineSets();
    await room.fetchRoomThreads();
    const threads = [];
    for (const thread of room.getThreads()) {
      await thread.fetchRootEvent?.();
      threads.push({ id: thread.id, length: thread.length, root: thread.rootEvent?.getContent()?.body ?? null });
    }
    const edited = room.findEventById(editedId);
    out({
      kind: "done",
      serverSupport: sdk.Thread.hasServerSideSupport,
      listSupport: sdk.Thread.hasServerSideListSupport,
      threads,
      edited: edited ? edited.getContent().body : null,
    });
  } catch (e) {
    out({ kind: "error", message: String(e && e.stack || e) });
  }
  client.stopClient();
  process.exit(0);
});
// Short long-polls: a sync still waiting on the server when this exits would hold its shutdown.
await client.startClient({ initialSyncLimit: 30, threadSupport: true, pollTimeout: 500 });
