// The partner directory for every user: search, recommendations with why, an
// organization's profile and rooms, and starting a conversation with its contacts.
import { CLIENT, DIRECTORY, api, enc, query } from "./api.js";
import { act, badge, button, checkbox, clear, h, input, notify } from "./dom.js";

function safeLink(url) {
  return /^https?:\/\//i.test(url) ? h("a", { href: url, rel: "noopener noreferrer", target: "_blank" }, url) : url;
}

// Mark the room a direct chat in m.direct, so Matrix clients list it with the contact.
async function rememberDirect(me, contact, roomId) {
  const path = `${CLIENT}/user/${enc(me)}/account_data/m.direct`;
  let direct = {};
  try {
    direct = await api("GET", path);
  } catch {
    direct = {};
  }
  direct[contact] = [...(Array.isArray(direct[contact]) ? direct[contact] : []), roomId];
  await api("PUT", path, direct);
}

async function startConversation(contact, out, ctx) {
  // A direct chat that federates even where new rooms are internal by default.
  const r = await api("POST", `${CLIENT}/createRoom`, {
    preset: "trusted_private_chat", is_direct: true, invite: [contact],
    creation_content: { "m.federate": true },
  });
  await rememberDirect(ctx.session.user_id, contact, r.room_id);
  clear(out).appendChild(h("p", { class: "conversation-started" },
    badge("started", "ok"), `Conversation with ${contact} created: `, h("code", {}, r.room_id),
    ". Open it in your Matrix client."));
  notify(`Invited ${contact}`);
}

function orgCard(entry, ctx, extra) {
  const p = entry.profile || {};
  const verified = entry.verified || (entry.verified_by && entry.verified_by.length);
  const out = h("div", { class: "conversation-result", "aria-live": "polite" });
  const message = h("input", { "aria-label": `Message to ${entry.server_name}`, placeholder: "Message (optional)", class: "partner-message" });
  return h("article", { class: "card org", dataset: { server: entry.server_name } },
    h("h3", { class: "org-name" }, p.name || entry.server_name),
    h("p", {},
      verified ? badge(`Verified${entry.verified_by && entry.verified_by.length ? ` by ${entry.verified_by.join(", ")}` : ""}`, "ok")
        : badge("Not verified", "wait"),
      h("code", {}, entry.server_name), p.location ? ` · ${p.location}` : ""),
    p.description ? h("p", { class: "org-description" }, p.description) : null,
    p.specialties && p.specialties.length ? h("p", {}, "Specialties: ", p.specialties.join(", ")) : null,
    p.website ? h("p", {}, "Website: ", safeLink(p.website)) : null,
    extra || null,
    p.rooms && p.rooms.length ? h("div", {}, h("h4", {}, "Listed rooms"),
      h("ul", {}, p.rooms.map((r) => h("li", {}, h("code", {}, r))))) : null,
    p.contacts && p.contacts.length ? h("div", {}, h("h4", {}, "Contacts"),
      h("ul", {}, p.contacts.map((c) => h("li", {}, h("code", {}, c), " ",
        button("Start a conversation", () => act(`Conversation with ${c}`, () => startConversation(c, out, ctx)),
          { class: "secondary start-conversation", dataset: { contact: c } }))))) : null,
    out,
    ctx.admin ? h("div", { class: "row" }, message,
      button("Request partnership", () => act(`Partnership request to ${entry.server_name}`,
        () => api("POST", `${DIRECTORY}/request_partnership`, { server_name: entry.server_name, message: message.value })),
      { class: "request-partnership" })) : null);
}

export async function directoryPage(section, ctx) {
  const q = h("input", { id: "dir-q", name: "q", type: "search" });
  const specialty = h("input", { id: "dir-specialty", name: "specialty" });
  const location = h("input", { id: "dir-location", name: "location" });
  const verified = checkbox("Verified only", { id: "dir-verified" });
  const results = h("div", { id: "dir-results", "aria-live": "polite" });
  const form = h("form", { class: "inline", id: "dir-form", role: "search" },
    h("label", {}, "Search", q), h("label", {}, "Specialty", specialty), h("label", {}, "Location", location),
    verified, h("button", { type: "submit", id: "dir-search" }, "Search"));
  const run = async () => {
    clear(results).appendChild(h("p", { class: "muted" }, "Searching…"));
    const r = await api("GET", `${DIRECTORY}/search${query({
      q: q.value, specialty: specialty.value, location: location.value,
      verified_only: verified.querySelector("input").checked ? "true" : "",
    })}`);
    clear(results);
    results.appendChild(h("p", { class: "muted" }, `${r.results.length} organization(s) from ${(r.directories || []).join(", ") || "no directory"}`));
    for (const [d, why] of Object.entries(r.failed || {})) results.appendChild(h("p", { class: "error" }, `${d} did not answer: ${why}`));
    for (const entry of r.results) results.appendChild(orgCard(entry, ctx));
    results.dataset.searched = "true";
  };
  form.addEventListener("submit", (ev) => { ev.preventDefault(); run().catch((e) => notify(e.message, true)); });
  section.append(form, results, h("h2", {}, "Recommended for us"));
  const recs = h("div", { id: "dir-recommendations" });
  section.appendChild(recs);
  try {
    const r = await api("GET", `${DIRECTORY}/recommendations`);
    if (!r.recommendations.length) recs.appendChild(h("p", { class: "muted" }, "No recommendations yet."));
    for (const rec of r.recommendations) {
      const why = Object.entries(rec.explanations || {}).flatMap(([d, e]) =>
        ((e && e.reasons) || []).map((reason) => `${reason} (${d})`));
      recs.appendChild(orgCard(rec, ctx, h("div", {}, h("p", {}, `Score ${rec.score}. Why:`),
        h("ul", { class: "why" }, why.map((w) => h("li", {}, w))))));
    }
  } catch (e) {
    recs.appendChild(h("p", { class: "muted" }, `Recommendations unavailable: ${e.message}`));
  }
}
