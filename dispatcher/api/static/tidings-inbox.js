/*
 * <tidings-inbox>: a notification bell and its panel, for any page, with no framework and no build step.
 *
 *   <script type="module" src="https://notify.example/ui/tidings-inbox.js"></script>
 *   <tidings-inbox api-base="https://notify.example" token="<a user token>" locale="en"></tidings-inbox>
 *
 * Attributes: api-base (Tidings' web process; default: the script's own origin), token (a user token)
 * and locale ("en", "fr"). For short-lived tokens, set the property tokenProvider to a function returning
 * a token (or a promise of one): it is called before each request, and again once when one is refused.
 * Clicking a notification marks it read and follows its url; the element first dispatches a cancelable
 * "tidings-navigate" event (detail: {url, notification}), so a single-page app can route it itself.
 * Theme it with CSS custom properties on the element: --tidings-accent, --tidings-background,
 * --tidings-foreground, --tidings-muted, --tidings-unread, --tidings-font, --tidings-radius.
 *
 * It reads the HTTP API (docs/api.md): GET /v1/me/notifications (cursor pages), the counts, read,
 * read-all, archive, and the live stream GET /v1/me/notifications/stream (Server-Sent Events, read with
 * fetch so that the token goes in a header, resumed with Last-Event-ID after any disconnection).
 */

import { TidingsElement } from "./tidings-element.js";
const PAGE_SIZE = 20;
const MAX_BADGE = 99;
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 30000;

export const STRINGS = {
  en: {
    bell: "Notifications",
    bellUnread: (n) => `Notifications, ${n} unread`,
    panel: "Notifications",
    markAllRead: "Mark all as read",
    archive: "Archive",
    archiveLabel: (title) => `Archive: ${title}`,
    empty: "You are all caught up.",
    loading: "Loading…",
    failed: "Notifications could not be loaded.",
    retry: "Try again",
    unread: "Unread",
    justNow: "just now",
  },
  fr: {
    bell: "Notifications",
    bellUnread: (n) => `Notifications, ${n} non lue${n > 1 ? "s" : ""}`,
    panel: "Notifications",
    markAllRead: "Tout marquer comme lu",
    archive: "Archiver",
    archiveLabel: (title) => `Archiver : ${title}`,
    empty: "Vous êtes à jour.",
    loading: "Chargement…",
    failed: "Les notifications n'ont pas pu être chargées.",
    retry: "Réessayer",
    unread: "Non lue",
    justNow: "à l'instant",
  },
};

/** "3 minutes ago", "yesterday", in the locale's words (Intl.RelativeTimeFormat). */
export function relativeTime(iso, locale, now = Date.now()) {
  const seconds = Math.round((Date.parse(iso) - now) / 1000);
  if (Math.abs(seconds) < 45) return (STRINGS[locale] || STRINGS.en).justNow;
  const format = new Intl.RelativeTimeFormat(locale, { numeric: "auto" });
  const steps = [
    ["minute", 60],
    ["hour", 3600],
    ["day", 86400],
    ["week", 604800],
    ["month", 2629800],
    ["year", 31557600],
  ];
  let unit = steps[0];
  for (const step of steps) if (Math.abs(seconds) >= step[1]) unit = step;
  return format.format(Math.round(seconds / unit[1]), unit[0]);
}

/** The badge's text: the count, "99+" past 99, nothing at 0. */
export function badgeText(count) {
  if (!count) return "";
  return count > MAX_BADGE ? `${MAX_BADGE}+` : String(count);
}

/** Server-Sent Events from a fetch body: calls onEvent({id, event, data}) for each complete event. */
export async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const message = { id: null, event: "message", data: [] };
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "id") message.id = text;
        else if (field === "event") message.event = text;
        else if (field === "data") message.data.push(text);
      }
      if (message.data.length) onEvent({ ...message, data: message.data.join("\n") });
    }
  }
}

const STYLE = `
:host { position: relative; display: inline-block; }
button { font: inherit; color: inherit; }
.bell {
  position: relative; display: grid; place-items: center; width: 40px; height: 40px;
  border: 0; border-radius: 50%; background: transparent; cursor: pointer;
}
.bell:hover { background: var(--_unread); }
.bell svg { width: 24px; height: 24px; fill: currentColor; }
.badge {
  position: absolute; top: 0; right: 0; min-width: 18px; height: 18px; padding: 0 5px; box-sizing: border-box;
  border-radius: 9px; background: #c62828; color: #fff; font-size: 11px; font-weight: 700; line-height: 18px;
}
.badge:empty { display: none; }
.panel {
  position: absolute; right: 0; top: calc(100% + 6px); z-index: 1000; width: min(380px, 92vw);
  display: flex; flex-direction: column; max-height: min(520px, 80vh);
  background: var(--_background); border: 1px solid rgba(0, 0, 0, .12); border-radius: var(--_radius);
  box-shadow: 0 12px 32px rgba(0, 0, 0, .18); overflow: hidden;
  transition: opacity .15s ease, transform .15s ease;
}
.panel[hidden] { display: none; }
.panel:focus { outline: none; }
header { display: flex; align-items: center; justify-content: space-between; padding: 10px 14px;
  border-bottom: 1px solid rgba(0, 0, 0, .08); }
h2 { margin: 0; font-size: 15px; }
.link { border: 0; background: none; color: var(--_accent); cursor: pointer; padding: 4px; border-radius: 4px; }
.link:disabled { color: var(--_muted); cursor: default; }
ul { list-style: none; margin: 0; padding: 0; overflow-y: auto; }
li { display: flex; align-items: flex-start; border-bottom: 1px solid rgba(0, 0, 0, .06); }
li.unread { background: var(--_unread); }
.item { flex: 1; display: block; text-align: left; border: 0; background: none; padding: 10px 14px; cursor: pointer; }
.title { display: block; font-weight: 600; font-size: 14px; }
li.unread .title::before { content: ""; display: inline-block; width: 8px; height: 8px; margin-right: 6px;
  border-radius: 50%; background: var(--_accent); vertical-align: middle; }
.body { display: block; margin-top: 2px; font-size: 13px; color: var(--_muted); white-space: pre-line; }
time { display: block; margin-top: 4px; font-size: 12px; color: var(--_muted); }
.archive { border: 0; background: none; color: var(--_muted); cursor: pointer; padding: 10px; border-radius: 4px; }
.archive svg { width: 16px; height: 16px; fill: currentColor; }
.status { padding: 18px 14px; color: var(--_muted); font-size: 14px; text-align: center; }
.status[hidden] { display: none; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
@media (prefers-reduced-motion: reduce) { .panel { transition: none; } }
`;

const BELL_ICON =
  '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22Zm7-6V11a7 7 0 0 0-5.5-6.84V3.5a1.5 1.5 0 0 0-3 0v.66A7 7 0 0 0 5 11v5l-2 2v1h18v-1Z"/></svg>';
const ARCHIVE_ICON =
  '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M20.5 5.5 19 3.5H5L3.5 5.5V20a1 1 0 0 0 1 1h15a1 1 0 0 0 1-1ZM12 17.5 6.5 12H10V9h4v3h3.5ZM5.1 5l.8-1h12.2l.8 1Z"/></svg>';

export class TidingsInbox extends TidingsElement {
  static observedAttributes = ["api-base", "token", "locale"];

  constructor() {
    super(STYLE);
    this._items = new Map(); // id -> notification, newest first by insertion into the list
    this._cursor = undefined; // undefined: nothing loaded yet; null: the last page is loaded
    this._loading = false;
    this._lastEventId = null;
    this._counts = { total: 0, unread: 0, unseen: 0 };
    this._stream = null;
    this._retryMs = RETRY_MIN_MS;
    const root = this.shadowRoot;
    root.innerHTML = `<button class="bell" type="button" aria-haspopup="dialog" aria-expanded="false">${BELL_ICON}<span class="badge" aria-hidden="true"></span></button>
      <section class="panel" role="dialog" tabindex="-1" hidden>
        <header><h2></h2><button class="link mark-all" type="button"></button></header>
        <ul role="list"></ul>
        <p class="status" role="status"></p>
      </section>
      <span class="visually-hidden live" aria-live="polite"></span>`;
    this._bell = root.querySelector(".bell");
    this._badge = root.querySelector(".badge");
    this._panel = root.querySelector(".panel");
    this._list = root.querySelector("ul");
    this._status = root.querySelector(".status");
    this._markAll = root.querySelector(".mark-all");
    this._bell.addEventListener("click", () => this.toggle());
    this._markAll.addEventListener("click", () => this.markAllRead());
    this._panel.addEventListener("keydown", (event) => this._onKey(event));
    this._bell.addEventListener("keydown", (event) => this._onKey(event));
    this._onOutside = (event) => {
      if (!event.composedPath().includes(this)) this.close();
    };
    this._list.addEventListener("scroll", () => this._loadIfNearEnd(), { passive: true });
  }

  get strings() {
    return STRINGS[this.getAttribute("locale")] || STRINGS.en;
  }

  get open() {
    return !this._panel.hidden;
  }

  get counts() {
    return { ...this._counts };
  }

  connectedCallback() {
    this._renderStrings();
    this._refreshCounts();
    this._connect();
  }

  disconnectedCallback() {
    this._stream?.abort();
    this._stream = null;
    clearTimeout(this._retryTimer);
    document.removeEventListener("click", this._onOutside, true);
  }

  attributeChangedCallback(name, before, after) {
    if (!this.isConnected || before === after) return;
    if (name === "locale") {
      this._renderStrings();
      for (const item of this._items.values()) this._renderItem(item);
    } else {
      this._reset(); // a new user or server: start over
    }
  }

  toggle() {
    if (this.open) this.close();
    else this.show();
  }

  show() {
    this._panel.hidden = false;
    this._bell.setAttribute("aria-expanded", "true");
    document.addEventListener("click", this._onOutside, true);
    const first = this._list.querySelector(".item");
    (first || this._panel).focus(); // the panel itself until the first page is in
    if (this._cursor === undefined) this._loadMore();
  }

  close() {
    if (!this.open) return;
    this._panel.hidden = true;
    this._bell.setAttribute("aria-expanded", "false");
    document.removeEventListener("click", this._onOutside, true);
    this._bell.focus();
  }

  async markAllRead() {
    await this._request("POST", "/v1/me/notifications/read-all", {});
    const now = new Date().toISOString();
    for (const item of this._items.values()) if (!item.read_at) this._renderItem({ ...item, read_at: now });
    this._setCounts({ ...this._counts, unread: 0 });
  }

  // --- requests ---------------------------------------------------------------------------------

  async _request(method, path, body) {
    const options = { method };
    if (body !== undefined) {
      options.body = JSON.stringify(body);
      options.headers = { "Content-Type": "application/json" };
    }
    const response = await this.apiFetch(path, options);
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status}`);
    return response.status === 204 ? null : response.json();
  }

  async _refreshCounts() {
    try {
      this._setCounts(await this._request("GET", "/v1/me/notifications/count"));
    } catch (error) {
      console.warn("tidings-inbox:", error.message);
    }
  }

  async _loadMore() {
    if (this._loading || this._cursor === null || !this.open) return;
    this._loading = true;
    this._showStatus(this.strings.loading);
    let loaded = false;
    try {
      const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
      if (this._cursor) query.set("cursor", this._cursor);
      const page = await this._request("GET", `/v1/me/notifications?${query}`);
      for (const item of page.items) if (!this._items.has(item.id)) this._renderItem(item, "end");
      this._cursor = page.next_cursor;
      this._showStatus(this._items.size ? "" : this.strings.empty);
      if (this._root().activeElement === this._panel) this._list.querySelector(".item")?.focus();
      loaded = true;
    } catch (error) {
      this._showStatus(this.strings.failed);
      console.warn("tidings-inbox:", error.message);
    } finally {
      this._loading = false;
    }
    if (loaded) this._loadIfNearEnd(); // a page too short to scroll: the next one now
  }

  /** Infinite scroll: the next page once the list is scrolled to within 80 px of its end. */
  _loadIfNearEnd() {
    const list = this._list;
    if (list.scrollTop + list.clientHeight >= list.scrollHeight - 80) this._loadMore();
  }

  // --- the live stream --------------------------------------------------------------------------

  async _connect() {
    const controller = new AbortController();
    this._stream = controller;
    try {
      const headers = { Accept: "text/event-stream" };
      if (this._lastEventId) headers["Last-Event-ID"] = this._lastEventId;
      const response = await this.apiFetch("/v1/me/notifications/stream", { headers, signal: controller.signal });
      if (!response.ok) throw new Error(`stream: ${response.status}`);
      this.dataset.stream = "open";
      await readEvents(response.body, (message) => {
        this._retryMs = RETRY_MIN_MS;
        this._onEvent(message);
      });
    } catch (error) {
      if (controller.signal.aborted) return;
      console.warn("tidings-inbox:", error.message);
    }
    if (controller.signal.aborted || this._stream !== controller) return;
    this.dataset.stream = "reconnecting";
    this._retryTimer = setTimeout(() => this._stream === controller && this._connect(), this._retryMs);
    this._retryMs = Math.min(this._retryMs * 2, RETRY_MAX_MS);
  }

  _onEvent({ id, event, data }) {
    if (id) this._lastEventId = id;
    const payload = JSON.parse(data);
    if (event === "count") {
      this._setCounts(payload);
    } else if (event === "notification" && !this._items.has(payload.id)) {
      this._renderItem(payload, "start");
      this._showStatus("");
      this._root().querySelector(".live").textContent = payload.title;
      this.dispatchEvent(new CustomEvent("tidings-notification", { detail: payload }));
    }
  }

  _reset() {
    this._stream?.abort();
    this._stream = null;
    this._items.clear();
    this._list.replaceChildren();
    this._cursor = undefined;
    this._lastEventId = null;
    this._refreshCounts();
    this._connect();
    if (this.open) this._loadMore();
  }

  // --- rendering --------------------------------------------------------------------------------

  _root() {
    return this.shadowRoot;
  }

  _renderStrings() {
    const s = this.strings;
    this._panel.setAttribute("aria-label", s.panel);
    this._panel.querySelector("h2").textContent = s.panel;
    this._markAll.textContent = s.markAllRead;
    this._setCounts(this._counts);
  }

  _setCounts(counts) {
    this._counts = { total: counts.total, unread: counts.unread, unseen: counts.unseen };
    this._badge.textContent = badgeText(counts.unread);
    this._bell.setAttribute("aria-label", counts.unread ? this.strings.bellUnread(counts.unread) : this.strings.bell);
    this._markAll.disabled = !counts.unread;
    this.dataset.unread = String(counts.unread);
  }

  _showStatus(text) {
    this._status.textContent = text;
    this._status.hidden = !text;
  }

  _renderItem(item, where) {
    const s = this.strings;
    const locale = this.getAttribute("locale") || "en";
    this._items.set(item.id, item);
    let row = this._list.querySelector(`li[data-id="${item.id}"]`);
    if (!row) {
      row = document.createElement("li");
      row.dataset.id = String(item.id);
      row.innerHTML = `<button class="item" type="button"><span class="title"></span><span class="body"></span><time></time></button>
        <button class="archive" type="button">${ARCHIVE_ICON}</button>`;
      row.querySelector(".item").addEventListener("click", () => this._open(row.dataset.id));
      row.querySelector(".archive").addEventListener("click", () => this._archive(row.dataset.id));
      if (where === "start") this._list.prepend(row);
      else this._list.append(row);
    }
    row.classList.toggle("unread", !item.read_at);
    row.querySelector(".title").textContent = item.title;
    row.querySelector(".body").textContent = item.body;
    const time = row.querySelector("time");
    time.dateTime = item.created_at;
    time.textContent = relativeTime(item.created_at, locale);
    time.title = new Date(item.created_at).toLocaleString(locale);
    const label = item.read_at ? item.title : `${s.unread}: ${item.title}`;
    row.querySelector(".item").setAttribute("aria-label", `${label}. ${time.textContent}`);
    row.querySelector(".archive").setAttribute("aria-label", s.archiveLabel(item.title));
  }

  async _open(id) {
    const item = this._items.get(Number(id));
    if (!item) return;
    if (!item.read_at) {
      try {
        const updated = await this._request("POST", `/v1/me/notifications/${item.id}/read`);
        this._renderItem(updated);
        this._setCounts({ ...this._counts, unread: Math.max(0, this._counts.unread - 1) });
      } catch (error) {
        console.warn("tidings-inbox:", error.message);
      }
    }
    if (!item.url || !/^https?:$/.test(new URL(item.url, window.location.href).protocol)) return;
    const detail = { url: item.url, notification: this._items.get(item.id) };
    if (this.dispatchEvent(new CustomEvent("tidings-navigate", { detail, cancelable: true }))) {
      window.location.assign(item.url);
    }
  }

  async _archive(id) {
    const item = this._items.get(Number(id));
    if (!item) return;
    const row = this._list.querySelector(`li[data-id="${item.id}"]`);
    const next = row?.nextElementSibling?.querySelector(".item") || row?.previousElementSibling?.querySelector(".item");
    try {
      await this._request("POST", `/v1/me/notifications/${item.id}/archive`);
    } catch (error) {
      console.warn("tidings-inbox:", error.message);
      return;
    }
    row?.remove();
    this._items.delete(item.id);
    const unread = item.read_at ? this._counts.unread : Math.max(0, this._counts.unread - 1);
    this._setCounts({ ...this._counts, total: Math.max(0, this._counts.total - 1), unread });
    (next || this._markAll).focus();
    if (!this._items.size) this._showStatus(this.strings.empty);
  }

  _onKey(event) {
    if (event.key === "Escape" && this.open) {
      event.preventDefault();
      this.close();
    }
  }
}

if (!customElements.get("tidings-inbox")) customElements.define("tidings-inbox", TidingsInbox);
