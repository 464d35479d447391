// A matrix-js-sdk client with its Rust crypto (@matrix-org/matrix-sdk-crypto-wasm), driven
// by the end-to-end encryption tests. Arguments: baseUrl userId accessToken deviceId password
// [recoveryKey]. The crypto store is in memory (Node has no IndexedDB), so each process is one
// device's whole life.
//
// Commands arrive on stdin as JSON lines {"id": n, "cmd": "...", ...}; each is answered on stdout
// by {"kind": "result", "id": n, ...} (or {"kind": "error", "id": n, "message": ...}). Besides the
// answers, stdout carries what the client sees as JSON lines:
//   {"kind": "message", ...}   a room message, after decryption, with the type it had on the wire
//   {"kind": "device_lists", changed, left}   the device_lists part of each /sync answer
//   {"kind": "to_device", type, sender}   each to-device event a /sync answer hands over
//   {"kind": "sync", state}
// Anything else on stdout (none is written on purpose) is not JSON-object lines.
import readline from "node:readline";

import "./node20.mjs";
const sdk = await import("matrix-js-sdk");
const { decodeRecoveryKey } = await import("matrix-js-sdk/lib/crypto-api/index.js");
const { logger } = await import("matrix-js-sdk/lib/logger.js");
logger.setLevel(process.env.E2EE_JS_LOG ?? "warn");

const [baseUrl, userId, accessToken, deviceId, password, recoveryKeyArg] = process.argv.slice(2);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

// The secret storage key: made by bootstrapSecretStorage in this process, or given (a fresh
// login restoring its backup).
let secretStorageKey = recoveryKeyArg ? decodeRecoveryKey(recoveryKeyArg) : null;
const cryptoCallbacks = {
  getSecretStorageKey: async ({ keys }) => {
    if (!secretStorageKey) return null;
    const keyId = Object.keys(keys)[0];
    return [keyId, secretStorageKey];
  },
  cacheSecretStorageKey: (_keyId, _info, key) => { secretStorageKey = key; },
};

// Every request goes through the real fetch; /sync answers are also reported, so the tests see
// the device lists exactly as the server sent them.
async function fetchFn(input, init) {
  const response = await fetch(input, init);
  const url = String(input?.url ?? input);
  if (url.includes("/_matrix/client/v3/sync") && response.ok) {
    const body = await response.clone().json();
    for (const event of body.to_device?.events ?? []) {
      const shownContent = event.type.startsWith("m.key.verification.") ? event.content : undefined;
      out({ kind: "to_device", type: event.type, sender: event.sender, content: shownContent });
    }
    const lists = body.device_lists ?? {};
    if ((lists.changed ?? []).length || (lists.left ?? []).length) {
      out({ kind: "device_lists", changed: lists.changed ?? [], left: lists.left ?? [] });
    }
  }
  if (url.includes("/keys/signatures/upload")) {
    const failures = (await response.clone().json()).failures ?? {};
    out({ kind: "signatures_uploaded", status: response.status, failures, body: init?.body ? JSON.parse(init.body) : null });
  }
  return response;
}

const client = sdk.createClient({ baseUrl, userId, accessToken, deviceId, cryptoCallbacks, fetchFn });
await client.initRustCrypto({ useIndexedDB: false });
// initRustCrypto turns the Rust side's tracing on at debug level; keep only its warnings.
const wasm = await import("@matrix-org/matrix-sdk-crypto-wasm");
new wasm.Tracing(wasm.LoggerLevel[process.env.E2EE_JS_RUST_LOG ?? "Warn"]).turnOn();
const crypto = client.getCrypto();

// What a room message shows: its body once decrypted, never the SDK's "Unable to decrypt" text.
function shown(event) {
  const failure = event.isDecryptionFailure() ? String(event.decryptionFailureReason) : null;
  return { wireType: event.getWireType(), body: failure ? null : event.getContent()?.body ?? null, failure };
}

async function reportMessage(event) {
  await client.decryptEventIfNeeded(event);
  if (event.getType() !== "m.room.message") return;
  out({
    kind: "message", room: event.getRoomId(), eventId: event.getId(), sender: event.getSender(),
    ...shown(event),
  });
}
client.on(sdk.ClientEvent.Sync, (state) => out({ kind: "sync", state }));
client.on(sdk.RoomEvent.Timeline, (event, _room, toStart) => {
  if (!toStart) reportMessage(event).catch((e) => out({ kind: "log", message: String(e) }));
});
// An event that failed to decrypt at first (its key arrived later) is decrypted again.
client.on(sdk.MatrixEventEvent.Decrypted, (event) => {
  if (event.getType() === "m.room.message" && !event.isDecryptionFailure()) {
    out({
      kind: "message", room: event.getRoomId(), eventId: event.getId(), sender: event.getSender(),
      ...shown(event), late: true,
    });
  }
});

// Interactive verification (SAS, emoji), as a user who compares the emoji and finds them equal.
const { VerificationPhase, VerificationRequestEvent, VerifierEvent, CryptoEvent } = await import("matrix-js-sdk/lib/crypto-api/index.js");
async function runSas(verifier) {
  verifier.on(VerifierEvent.ShowSas, (sas) => {
    out({ kind: "sas", emoji: sas.sas.emoji.map(([emoji]) => emoji) });
    sas.confirm().catch((e) => out({ kind: "log", message: String(e) }));
  });
  await verifier.verify();
}
// The SDK's request objects hear of changes only through a weak reference from the Rust side:
// one held by nothing but its own listeners can be garbage collected mid-verification (and then
// never moves on). A client's UI holds its requests; this set does it here.
const liveRequests = new Set();
function untilPhase(request, phases) {
  liveRequests.add(request);
  return new Promise((resolve) => {
    const check = () => {
      if (phases.includes(request.phase)) {
      request.off(VerificationRequestEvent.Change, check);
      if ([VerificationPhase.Done, VerificationPhase.Cancelled].includes(request.phase)) liveRequests.delete(request);
      resolve();
    }
    };
    request.on(VerificationRequestEvent.Change, check);
    check();
  });
}
// The other side of a verification: accept every request and confirm what it shows.
client.on(CryptoEvent.VerificationRequestReceived, async (request) => {
  try {
    out({ kind: "verification_request", from: request.otherUserId });
    await request.accept();
    await untilPhase(request, [VerificationPhase.Started, VerificationPhase.Cancelled]);
    if (request.verifier) await runSas(request.verifier);
    await untilPhase(request, [VerificationPhase.Done, VerificationPhase.Cancelled]);
    out({ kind: "verification_done", with: request.otherUserId, phase: VerificationPhase[request.phase], code: request.cancellationCode });
  } catch (e) {
    out({ kind: "log", message: String(e?.stack ?? e) });
  }
});

const passwordAuth = async (makeRequest) => {
  await makeRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password });
};

const commands = {
  async ownKeys() {
    return await crypto.getOwnDeviceKeys();
  },
  async join({ room }) {
    await client.joinRoom(room);
    return {};
  },
  async send({ room, body }) {
    const { event_id } = await client.sendMessage(room, { msgtype: "m.text", body });
    return { eventId: event_id };
  },
  async encryptionEnabled({ room }) {
    return { enabled: await crypto.isEncryptionEnabledInRoom(room) };
  },
  async bootstrapCrossSigning() {
    await crypto.bootstrapCrossSigning({ authUploadDeviceSigningKeys: passwordAuth });
    return { ready: await crypto.isCrossSigningReady(), status: await crypto.getCrossSigningStatus() };
  },
  async bootstrapBackup() {
    let recoveryKey = null;
    await crypto.bootstrapSecretStorage({
      createSecretStorageKey: async () => {
        const key = await crypto.createRecoveryKeyFromPassphrase();
        recoveryKey = key.encodedPrivateKey;
        secretStorageKey = key.privateKey;
        return key;
      },
      setupNewSecretStorage: true,
      setupNewKeyBackup: true,
    });
    // The new backup is enabled by a check the SDK starts in the background; run it now.
    await crypto.checkKeyBackupAndEnable();
    const info = await crypto.getKeyBackupInfo();
    return {
      recoveryKey, backupVersion: await crypto.getActiveSessionBackupVersion(),
      secretStorageReady: await crypto.isSecretStorageReady(), info,
      trust: info ? await crypto.isKeyBackupTrusted(info) : null,
    };
  },
  async backupVersion() {
    return { version: await crypto.getActiveSessionBackupVersion() };
  },
  async restoreBackup() {
    await crypto.loadSessionBackupPrivateKeyFromSecretStorage();
    const check = await crypto.checkKeyBackupAndEnable();
    const result = await crypto.restoreKeyBackup();
    return { total: result.total, imported: result.imported, trusted: check?.trustInfo?.trusted ?? null };
  },
  // The room's history, paginated back to its start and decrypted.
  async history({ room }) {
    const r = client.getRoom(room);
    while (await client.scrollback(r, 50) && r.oldState.paginationToken) { /* back to the start */ }
    const events = r.getLiveTimeline().getEvents();
    const messages = [];
    for (const event of events) {
      await client.decryptEventIfNeeded(event);
      if (event.getType() !== "m.room.message") continue;
      messages.push({
        eventId: event.getId(), sender: event.getSender(), ...shown(event),
      });
    }
    return { messages };
  },
  // Verify another user's device interactively (to-device messages both ways).
  async verifyDevice({ user, device }) {
    const request = await crypto.requestDeviceVerification(user, device);
    await untilPhase(request, [VerificationPhase.Ready, VerificationPhase.Cancelled]);
    if (request.phase === VerificationPhase.Cancelled) return { phase: "Cancelled", code: request.cancellationCode };
    await runSas(await request.startVerification("m.sas.v1"));
    await untilPhase(request, [VerificationPhase.Done, VerificationPhase.Cancelled]);
    return { phase: VerificationPhase[request.phase], code: request.cancellationCode };
  },
  async deviceStatus({ user, device, download }) {
    if (download) await crypto.getUserDeviceInfo([user], true);
    const status = await crypto.getDeviceVerificationStatus(user, device);
    const userStatus = await crypto.getUserVerificationStatus(user);
    const devices = await crypto.getUserDeviceInfo([user]);
    return {
      known: status !== null,
      signedByOwner: status?.signedByOwner ?? null,
      crossSigningVerified: status?.crossSigningVerified ?? null,
      hasCrossSigningKeys: await crypto.userHasCrossSigningKeys(user, true),
      userCrossSigningVerified: userStatus.isCrossSigningVerified(),
      devices: [...(devices.get(user)?.keys() ?? [])],
    };
  },
  async quit() {
    client.stopClient();
    setTimeout(() => process.exit(0), 10);
    return {};
  },
};

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", async (line) => {
  const { id, cmd, ...args } = JSON.parse(line);
  try {
    out({ kind: "result", id, ...(await commands[cmd](args)) });
  } catch (e) {
    out({ kind: "error", id, message: String(e?.stack ?? e) });
  }
});
await client.startClient({ initialSyncLimit: 20 });
