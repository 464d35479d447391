// Network analytics: the server's daily rollups (GET /_accord/admin/v1/analytics) as charts.
import { ADMIN, api, query } from "./api.js";
import { clear, h } from "./dom.js";
import { barChart, lineChart } from "./charts.js";

export async function analyticsPage(section) {
  const days = h("select", { id: "analytics-days" },
    [7, 30, 90, 365].map((d) => h("option", { value: String(d), selected: d === 30 }, `${d} days`)));
  const charts = h("div", { class: "charts", id: "analytics-charts" });
  const load = async () => {
    const r = await api("GET", `${ADMIN}/analytics${query({ days: days.value })}`);
    clear(charts).append(
      lineChart("Messages per day", r.days, [
        { name: "Internal", values: r.messages.internal },
        { name: "With other organizations", values: r.messages.federated },
      ], "chart-messages"),
      lineChart("Active users per day", r.days, [{ name: "Active users", values: r.active_users }], "chart-active-users"),
      lineChart("Partners over time", r.days, [{ name: "Active partners", values: r.partners }], "chart-partners"),
      barChart("Messages per partner", r.partner_traffic.map((t) => ({ label: t.server_name, value: t.sent + t.received })), "messages", "chart-partner-traffic"),
      barChart("Partner servers' average response time", r.response_times.filter((t) => t.avg_ms !== null)
        .map((t) => ({ label: t.server_name, value: Math.round(t.avg_ms) })), "ms", "chart-response-times"));
    charts.dataset.loaded = String(Date.now());
  };
  const form = h("form", { class: "inline" }, h("label", {}, "Period", days), h("button", { type: "submit", id: "analytics-refresh" }, "Refresh"));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); load(); });
  section.append(form, charts);
  await load();
}
