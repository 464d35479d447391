// The console's one way to the server: same origin, the access token from this tab's
// sessionStorage only (gone when the tab closes), errors as ApiError.
const KEY = "accord.console.session";

export class ApiError extends Error {
  constructor(status, errcode, message) {
    super(message || errcode || `HTTP ${status}`);
    this.status = status;
    this.errcode = errcode;
  }
}

export function session() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY) || "null");
  } catch {
    return null;
  }
}

export function saveSession(value) {
  if (value) sessionStorage.setItem(KEY, JSON.stringify(value));
  else sessionStorage.removeItem(KEY);
}

export async function api(method, path, body) {
  const headers = {};
  const s = session();
  if (s && s.access_token) headers.Authorization = `Bearer ${s.access_token}`;
  const init = { method, headers, credentials: "omit", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  let data = null;
  try {
    data = await resp.json();
  } catch {
    data = null;
  }
  if (!resp.ok) {
    if (resp.status === 401 && s) {
      saveSession(null);
      window.dispatchEvent(new Event("accord:signed-out"));
    }
    throw new ApiError(resp.status, data && data.errcode, data && data.error);
  }
  return data || {};
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "" && v !== false) q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

export const enc = encodeURIComponent;
export const CLIENT = "/_matrix/client/v3";
export const DIRECTORY = "/_matrix/client/unstable/org.accord.directory";
export const ADMIN = "/_accord/admin/v1";
export const SYNAPSE_V1 = "/_synapse/admin/v1";
export const SYNAPSE_V2 = "/_synapse/admin/v2";
