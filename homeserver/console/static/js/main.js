// The console's shell: sign-in, the page list (admin pages only for server admins,
// whom the server itself checks on every admin request), and hash routing.
import { CLIENT, SYNAPSE_V1, api, enc, saveSession, session } from "./api.js";
import { clear, h, notify } from "./dom.js";
import { directoryPage } from "./directory.js";
import { adminPages } from "./admin.js";
import { analyticsPage } from "./analytics.js";

const main = document.getElementById("main");
const state = { admin: false };

const PAGES = [
  { id: "directory", title: "Partner directory", render: directoryPage, admin: false },
  ...adminPages,
  { id: "analytics", title: "Analytics", render: analyticsPage, admin: true },
];

function visiblePages() {
  return PAGES.filter((p) => !p.admin || state.admin);
}

function renderNav(current) {
  const nav = document.getElementById("nav");
  const list = clear(document.getElementById("nav-list"));
  for (const p of visiblePages()) {
    list.appendChild(h("li", {}, h("a", {
      href: `#/${p.id}`, id: `nav-${p.id}`, "aria-current": p.id === current ? "page" : null,
    }, p.title)));
  }
  nav.hidden = false;
}

async function route() {
  const s = session();
  if (!s) {
    showLogin();
    return;
  }
  const wanted = (location.hash.replace(/^#\//, "") || "directory").split("?")[0];
  const page = visiblePages().find((p) => p.id === wanted) || visiblePages()[0];
  renderNav(page.id);
  clear(main);
  const section = h("section", { id: `page-${page.id}`, "aria-labelledby": "page-title" },
    h("h1", { id: "page-title" }, page.title));
  main.appendChild(section);
  document.title = `${page.title} · Accord console`;
  try {
    await page.render(section, { session: s, admin: state.admin, serverName: s.user_id.split(":").slice(1).join(":") });
  } catch (e) {
    section.appendChild(h("p", { class: "error", role: "alert" }, `Could not load this page: ${e.message}`));
  }
  section.dataset.loaded = "true";
  main.focus();
}

async function afterSignIn() {
  const s = session();
  document.getElementById("whoami").textContent = `Signed in as ${s.user_id}`;
  document.getElementById("logout").hidden = false;
  try {
    const r = await api("GET", `${SYNAPSE_V1}/users/${enc(s.user_id)}/admin`);
    state.admin = r.admin === true;
  } catch {
    state.admin = false; // the server refuses: not an admin
  }
  await route();
}

function showLogin() {
  document.getElementById("nav").hidden = true;
  document.getElementById("logout").hidden = true;
  document.getElementById("whoami").textContent = "";
  clear(main);
  const user = h("input", { id: "login-user", name: "username", autocomplete: "username", required: true });
  const pass = h("input", { id: "login-password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const form = h("form", { class: "stack login", id: "login-form" },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "With your Matrix account on this server."),
    h("label", {}, "User name or Matrix ID", user),
    h("label", {}, "Password", pass),
    h("button", { type: "submit", id: "login-submit" }, "Sign in"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const r = await api("POST", `${CLIENT}/login`, {
        type: "m.login.password", identifier: { type: "m.id.user", user: user.value.trim() },
        password: pass.value, initial_device_display_name: "Accord console",
      });
      saveSession({ access_token: r.access_token, user_id: r.user_id, device_id: r.device_id });
      pass.value = "";
      if (!location.hash || location.hash === "#/") location.hash = "#/directory";
      await afterSignIn();
    } catch (e) {
      notify(`Sign-in failed: ${e.message}`, true);
    }
  });
  main.appendChild(form);
  user.focus();
}

document.getElementById("logout").addEventListener("click", async () => {
  try {
    await api("POST", `${CLIENT}/logout`, {});
  } catch {
    // signed out on our side whatever the server says
  }
  saveSession(null);
  state.admin = false;
  showLogin();
});
window.addEventListener("hashchange", () => route());
window.addEventListener("accord:signed-out", () => showLogin());


if (session()) afterSignIn();
else showLogin();
