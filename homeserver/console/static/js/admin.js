// The organization admins' pages. The server refuses every admin request from anyone
// else; these pages are only listed for admins to spare others the refusals.
import { ADMIN, SYNAPSE_V1, SYNAPSE_V2, api, enc, query } from "./api.js";
import { act, badge, button, checkbox, clear, h, table, when } from "./dom.js";

const STATE_KIND = { active: "ok", pending: "wait", declined: "bad", revoked: "bad", failed: "bad" };

// A destructive action asks for a second click instead of a dialog.
function confirmButton(text, action, attrs) {
  const b = button(text, async () => {
    if (b.dataset.armed !== "true") {
      b.dataset.armed = "true";
      b.textContent = `Confirm: ${text}`;
      return;
    }
    b.disabled = true;
    await action();
  }, { class: "danger", ...(attrs || {}) });
  return b;
}

function rerender(section, page, ctx) {
  return async () => {
    while (section.children.length > 1) section.removeChild(section.lastChild);
    await page(section, ctx);
  };
}

// --- partnerships ---

async function sharedWith(server) {
  const { rooms } = await api("GET", `${SYNAPSE_V1}/federation/destinations/${enc(server)}/rooms${query({ limit: 500 })}`);
  return Promise.all(rooms.map(async (r) => {
    const details = await api("GET", `${SYNAPSE_V1}/rooms/${enc(r.room_id)}`).catch(() => ({}));
    return { room: { room_id: r.room_id, name: details.name }, theirs: r.members };
  }));
}

async function partnershipsPage(section, ctx) {
  const again = rerender(section, partnershipsPage, ctx);
  const { partnerships } = await api("GET", `${ADMIN}/partnerships`);
  const path = (p, action) => `${ADMIN}/partnerships/${enc(p.server_name)}/${action}`;
  const actions = (p) => {
    const out = [];
    if (p.direction === "inbound" && p.state === "pending") {
      out.push(button("Accept", () => act(`Accept ${p.server_name}`, () => api("POST", path(p, "accept"), {}), again), { class: "accept", dataset: { server: p.server_name } }));
      out.push(" ", button("Decline", () => act(`Decline ${p.server_name}`, () => api("POST", path(p, "decline"), {}), again), { class: "secondary decline" }));
    }
    if (p.direction === "outbound" && (p.state === "pending" || p.state === "failed")) {
      out.push(button("Cancel request", () => act(`Cancel request to ${p.server_name}`, () => api("POST", path(p, "cancel"), {}), again), { class: "secondary cancel" }));
    }
    if (p.state === "active") {
      out.push(confirmButton("Revoke", () => act(`Revoke ${p.server_name}`, () => api("POST", path(p, "revoke"), {}), again), { class: "danger revoke" }));
      const shared = h("div", { class: "shared" });
      out.push(" ", button("What they share", async () => {
        clear(shared).appendChild(h("p", { class: "muted" }, "Looking…"));
        const found = await sharedWith(p.server_name);
        clear(shared).appendChild(found.length
          ? h("ul", {}, found.map(({ room, theirs }) => h("li", {}, `${room.name || room.room_id}: `, theirs.join(", "))))
          : h("p", { class: "muted" }, "No shared rooms yet."));
      }, { class: "secondary" }), shared);
    }
    return out;
  };
  const group = (title, rows) => [h("h2", {}, title), table([
    { title: "Server", cell: (p) => h("code", {}, p.server_name) },
    { title: "Organization", cell: (p) => p.organization || "" },
    { title: "State", cell: (p) => badge(p.state, STATE_KIND[p.state] || "wait") },
    { title: "Message", cell: (p) => p.message || "" },
    { title: "Changed", cell: (p) => when(p.updated_ts) },
    { title: "Actions", cell: actions },
  ], rows)];
  const by = (f) => partnerships.filter(f);
  section.append(
    h("div", { id: "partnerships-incoming" }, group("Incoming requests", by((p) => p.direction === "inbound" && p.state === "pending"))),
    h("div", { id: "partnerships-outgoing" }, group("Outgoing requests", by((p) => p.direction === "outbound" && (p.state === "pending" || p.state === "failed")))),
    h("div", { id: "partnerships-active" }, group("Active partners", by((p) => p.state === "active"))),
    h("div", { id: "partnerships-past" }, group("Past", by((p) => ["declined", "revoked"].includes(p.state)))));
}

// --- our organization ---

async function organizationPage(section, ctx) {
  const again = rerender(section, organizationPage, ctx);
  const org = await api("GET", `${ADMIN}/organization`);
  const list = (v) => (v || []).join("\n");
  const lines = (el) => el.value.split("\n").map((s) => s.trim()).filter(Boolean);
  const name = h("input", { id: "org-name", value: org.name || "" });
  const description = h("textarea", { id: "org-description" });
  description.value = org.description || "";
  const specialties = h("textarea", { id: "org-specialties" });
  specialties.value = list(org.specialties);
  const loc = h("input", { id: "org-location", value: org.location || "" });
  const website = h("input", { id: "org-website", type: "url", value: org.website || "" });
  const contacts = h("textarea", { id: "org-contacts" });
  contacts.value = list(org.contacts);
  const rooms = h("textarea", { id: "org-rooms" });
  rooms.value = list(org.rooms);
  const publish = checkbox("Publish our partner list", { id: "org-publish-partners", checked: org.publish_partners });
  const form = h("form", { class: "stack", id: "org-form" },
    h("label", {}, "Name", name), h("label", {}, "Description", description),
    h("label", {}, "Specialties (one a line)", specialties), h("label", {}, "Location", loc),
    h("label", {}, "Website", website), h("label", {}, "Contacts (Matrix IDs, one a line)", contacts),
    h("label", {}, "Listed rooms (IDs or aliases, one a line)", rooms), publish,
    h("button", { type: "submit", id: "org-save" }, "Save and publish"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act("Profile saved", () => api("PUT", `${ADMIN}/organization`, {
      name: name.value, description: description.value, specialties: lines(specialties), location: loc.value,
      website: website.value || null, contacts: lines(contacts), rooms: lines(rooms),
      publish_partners: publish.querySelector("input").checked,
    }), again);
  });
  section.append(
    h("p", { class: "muted" }, org.source === "edited" ? `Edited by ${org.updated_by} on ${when(org.updated_ts)}.` : "As the configuration file sets it (not edited here yet)."),
    form, h("h2", {}, "Publication"),
    table([
      { title: "Directory", cell: (p) => h("code", {}, p.directory) },
      { title: "Status", cell: (p) => p.withdrawn ? badge("withdrawn", "wait") : p.last_error ? badge("failing", "bad") : badge("published", "ok") },
      { title: "Verified", cell: (p) => p.verified ? "yes" : "no" },
      { title: "Last published", cell: (p) => when(p.last_success_ts) },
      { title: "Expires", cell: (p) => when(p.expires_ts) },
      { title: "Last error", cell: (p) => p.last_error || "" },
    ], org.publication.publications || []),
    h("p", {}, "Directories configured: ", (org.publication.publish_to || []).join(", ") || "none"));
}

// --- people and bots ---

async function devicesOf(userId, box) {
  const load = async () => {
    const { devices } = await api("GET", `${SYNAPSE_V2}/users/${enc(userId)}/devices`);
    clear(box).appendChild(table([
      { title: "Device", cell: (d) => h("code", {}, d.device_id) },
      { title: "Name", cell: (d) => d.display_name || "" },
      { title: "Last seen", cell: (d) => `${when(d.last_seen_ts)} ${d.last_seen_ip || ""}` },
      { title: "", cell: (d) => confirmButton("Log out", () => act(`Device ${d.device_id} logged out`,
        () => api("DELETE", `${SYNAPSE_V2}/users/${enc(userId)}/devices/${enc(d.device_id)}`), load)) },
    ], devices, `Devices of ${userId}`));
  };
  await load();
}

async function peoplePage(section, ctx) {
  const again = rerender(section, peoplePage, ctx);
  const search = h("input", { id: "people-q", type: "search" });
  const listing = h("div", { id: "people-list" });
  const detail = h("div", { id: "people-detail", "aria-live": "polite" });
  const load = async () => {
    const r = await api("GET", `${SYNAPSE_V2}/users${query({ name: search.value, limit: 100, deactivated: "true" })}`);
    clear(listing).appendChild(table([
      { title: "User", cell: (u) => h("code", {}, u.name) },
      { title: "Display name", cell: (u) => u.displayname || "" },
      { title: "Kind", cell: (u) => [u.admin ? badge("admin", "ok") : null, u.user_type === "bot" ? badge("bot", "wait") : null] },
      { title: "Status", cell: (u) => u.deactivated ? badge("deactivated", "bad") : badge("active", "ok") },
      { title: "Actions", cell: (u) => u.deactivated ? "" : [
        button("Devices", () => devicesOf(u.name, detail), { class: "secondary" }), " ",
        button("Reset password", () => {
          const pw = h("input", { type: "password", "aria-label": `New password for ${u.name}`, autocomplete: "new-password" });
          clear(detail).appendChild(h("form", { class: "inline" }, h("label", {}, `New password for ${u.name}`, pw),
            button("Set password", () => act(`Password of ${u.name} reset`, () => api("POST", `${SYNAPSE_V1}/reset_password/${enc(u.name)}`, { new_password: pw.value, logout_devices: true })))));
          pw.focus();
        }, { class: "secondary" }), " ",
        u.user_type === "bot" ? button("New bot token", () => act(`Token for ${u.name}`, async () => {
          const t = await api("POST", `${SYNAPSE_V1}/users/${enc(u.name)}/login`, {});
          clear(detail).appendChild(h("p", {}, `Access token for ${u.name} (shown once, keep it safe): `, h("code", { class: "bot-token" }, t.access_token)));
        }), { class: "secondary" }) : null, " ",
        confirmButton("Deactivate", () => act(`${u.name} deactivated`, () => api("POST", `${SYNAPSE_V1}/deactivate/${enc(u.name)}`, { erase: false }), load)),
      ] },
    ], r.users, `${r.total} account(s)`));
  };
  const form = h("form", { class: "inline", role: "search" }, h("label", {}, "Find people", search), h("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); load(); });
  const localpart = h("input", { id: "new-user", required: true });
  const pw = h("input", { id: "new-password", type: "password", autocomplete: "new-password", required: true });
  const dn = h("input", { id: "new-displayname" });
  const bot = checkbox("Bot", { id: "new-bot" });
  const admin = checkbox("Server admin", { id: "new-admin" });
  const create = h("form", { class: "inline", id: "new-user-form" }, h("label", {}, "User name", localpart), h("label", {}, "Password", pw),
    h("label", {}, "Display name", dn), bot, admin, h("button", { type: "submit" }, "Create"));
  create.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const id = `@${localpart.value.trim().toLowerCase()}:${ctx.serverName}`;
    act(`${id} created`, () => api("PUT", `${SYNAPSE_V2}/users/${enc(id)}`, {
      password: pw.value, displayname: dn.value || undefined,
      admin: admin.querySelector("input").checked, user_type: bot.querySelector("input").checked ? "bot" : null,
    }), again);
  });
  section.append(form, listing, detail, h("h2", {}, "Create a person or a bot"), create);
  await load();
}

// --- rooms ---

async function roomsPage(section, ctx) {
  const partners = new Set((await api("GET", `${ADMIN}/partnerships${query({ state: "active" })}`))
    .partnerships.map((p) => p.server_name));
  const search = h("input", { id: "rooms-q", type: "search" });
  const listing = h("div", { id: "rooms-list" });
  const load = async () => {
    const r = await api("GET", `${SYNAPSE_V1}/rooms${query({ search_term: search.value, limit: 100 })}`);
    clear(listing).appendChild(table([
      { title: "Room", cell: (x) => [x.name || "(unnamed)", h("br"), h("code", {}, x.room_id)] },
      { title: "Kind", cell: (x) => x.federatable ? badge("federated", "wait") : badge("internal", "ok") },
      { title: "Members", cell: (x) => `${x.joined_members} (${x.joined_local_members} ours)` },
      { title: "Other servers", cell: (x) => {
        const box = h("span", {});
        if (x.joined_members > x.joined_local_members) {
          box.appendChild(button("Show", async () => {
            const { members } = await api("GET", `${SYNAPSE_V1}/rooms/${enc(x.room_id)}/members`);
            const servers = [...new Set(members.map((m) => m.split(":").slice(1).join(":")))].filter((s) => s !== ctx.serverName);
            clear(box).append(
              ...(servers.length ? servers.map((sv) => (partners.has(sv) ? badge(`partner ${sv}`, "ok") : badge(`${sv} (not a partner)`, "wait"))) : ["none"]),
              h("br"), h("span", { class: "muted" }, members.join(", ")));
          }, { class: "secondary" }));
        } else box.textContent = "none";
        return box;
      } },
      { title: "", cell: (x) => confirmButton("Delete", () => act(`Room ${x.room_id} deleted`, () => api("DELETE", `${SYNAPSE_V1}/rooms/${enc(x.room_id)}`, { purge: true }), load)) },
    ], r.rooms, `${r.total_rooms} room(s)`));
  };
  const form = h("form", { class: "inline", role: "search" }, h("label", {}, "Find rooms", search), h("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); load(); });
  section.append(form, listing);
  await load();
}

// --- federation health ---

async function federationPage(section, ctx) {
  const again = rerender(section, federationPage, ctx);
  const r = await api("GET", `${SYNAPSE_V1}/federation/destinations${query({ limit: 500 })}`);
  section.appendChild(table([
    { title: "Server", cell: (d) => [h("code", {}, d.destination), d.partner ? [" ", badge("partner", "ok")] : null] },
    { title: "Health", cell: (d) => d.consecutive_failures ? badge(`failing (${d.consecutive_failures})`, "bad") : d.last_success_ts ? badge("ok", "ok") : badge("no delivery yet", "wait") },
    { title: "Queued", cell: (d) => String(d.queue_depth) },
    { title: "Last success", cell: (d) => when(d.last_success_ts) },
    { title: "Backoff", cell: (d) => d.retry_interval ? `${Math.round(d.retry_interval / 1000)} s since ${when(d.retry_last_ts)}` : "none" },
    { title: "Last error", cell: (d) => d.last_error || "" },
    { title: "Refused", cell: (d) => d.refusals ? `${d.refusals} (last ${when(d.last_refusal_ts)})` : "0" },
    { title: "", cell: (d) => d.consecutive_failures ? button("Retry now", () => act(`Retrying ${d.destination}`, () => api("POST", `${SYNAPSE_V1}/federation/destinations/${enc(d.destination)}/reset_connection`, {}), again), { class: "secondary" }) : "" },
  ], r.destinations, `${r.total} server(s)`));
}

// --- audit log ---

async function auditPage(section) {
  const action = h("input", { id: "audit-action", placeholder: "e.g. partnership." });
  const actor = h("input", { id: "audit-actor" });
  const target = h("input", { id: "audit-target" });
  const since = h("input", { id: "audit-since", type: "date" });
  const until = h("input", { id: "audit-until", type: "date" });
  const listing = h("div", { id: "audit-list" });
  let next = null;
  const ms = (el, end) => el.value ? Date.parse(`${el.value}T${end ? "23:59:59.999" : "00:00:00"}Z`) : "";
  const load = async (more) => {
    const r = await api("GET", `${ADMIN}/audit_log${query({
      action: action.value, actor: actor.value, target: target.value, since: ms(since), until: ms(until, true),
      limit: 50, from: more ? next : "",
    })}`);
    next = r.next_token;
    if (!more) clear(listing);
    listing.appendChild(table([
      { title: "When", cell: (e) => when(e.ts) },
      { title: "Action", cell: (e) => h("code", {}, e.action) },
      { title: "Who", cell: (e) => e.actor || "" },
      { title: "Target", cell: (e) => e.target || "" },
      { title: "From", cell: (e) => e.ip || "" },
      { title: "Outcome", cell: (e) => badge(e.outcome, e.outcome === "ok" ? "ok" : "bad") },
      { title: "Details", cell: (e) => h("code", {}, JSON.stringify(e.details || {})) },
    ], r.entries));
    if (next) listing.appendChild(button("Older entries", () => load(true), { class: "secondary" }));
  };
  const form = h("form", { class: "inline", role: "search" }, h("label", {}, "Action", action), h("label", {}, "Who", actor),
    h("label", {}, "Target", target), h("label", {}, "From", since), h("label", {}, "Until", until), h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); load(false); });
  section.append(form, listing);
  await load(false);
}

// --- the directory operator's view ---

async function operatorPage(section, ctx) {
  const again = rerender(section, operatorPage, ctx);
  let r;
  try {
    r = await api("GET", `${ADMIN}/partner_directory/entries${query({ limit: 100 })}`);
  } catch (e) {
    section.appendChild(h("p", { class: "muted" }, `This server is not a partner directory (${e.message}).`));
    return;
  }
  const path = (e, what) => `${ADMIN}/partner_directory/entries/${enc(e.server_name)}${what}`;
  section.appendChild(table([
    { title: "Organization", cell: (e) => [(e.profile && e.profile.name) || "", h("br"), h("code", {}, e.server_name)] },
    { title: "Verified", cell: (e) => e.verified ? badge(`verified ${when(e.verified_ts)}`, "ok") : badge("not verified", "wait") },
    { title: "Published", cell: (e) => when(e.published_ts) },
    { title: "Expires", cell: (e) => when(e.expires_ts) },
    { title: "", cell: (e) => [
      e.verified ? button("Unverify", () => act(`${e.server_name} unverified`, () => api("POST", path(e, "/unverify"), {}), again), { class: "secondary" })
        : button("Verify", () => act(`${e.server_name} verified`, () => api("POST", path(e, "/verify"), {}), again)), " ",
      confirmButton("Remove", () => act(`${e.server_name} removed`, () => api("DELETE", path(e, "")), again)),
    ] },
  ], r.results, "Organizations listed in this directory"));
}

export const adminPages = [
  { id: "partnerships", title: "Partnerships", render: partnershipsPage, admin: true },
  { id: "organization", title: "Our organization", render: organizationPage, admin: true },
  { id: "people", title: "People and bots", render: peoplePage, admin: true },
  { id: "rooms", title: "Rooms", render: roomsPage, admin: true },
  { id: "federation", title: "Federation health", render: federationPage, admin: true },
  { id: "audit", title: "Audit log", render: auditPage, admin: true },
  { id: "operator", title: "Directory operator", render: operatorPage, admin: true },
];
