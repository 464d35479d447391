// One-shot matrix-js-sdk calls for the "finding people and rooms" features: tags, the
// user directory, a room summary and mutual rooms. Prints one JSON object with what the SDK returned.
import "./node20.mjs";
const sdk = await import("matrix-js-sdk");

const [baseUrl, userId, accessToken, deviceId, roomId, term, otherUser] = process.argv.slice(2);
const client = sdk.createClient({ baseUrl, userId, accessToken, deviceId });

await client.setRoomTag(roomId, "u.work", { order: 0.5 });
await client.setRoomTag(roomId, "m.favourite", {});
await client.deleteRoomTag(roomId, "m.favourite");
const tags = await client.getRoomTags(roomId);
const directory = await client.searchUserDirectory({ term, limit: 5 });
const summary = await client.getRoomSummary(roomId);
const mutual = await client._unstable_getSharedRooms(otherUser);
process.stdout.write(JSON.stringify({ tags, directory, summary, mutual }) + "\n");
