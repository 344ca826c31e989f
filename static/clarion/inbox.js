/*
 * <clarion-inbox>: Clarion's in-app inbox as a dependency-free web component.
 *
 *   <script src="https://clarion.example.com/static/clarion/inbox.js" defer></script>
 *   <clarion-inbox recipient-id="user-42" token="…"></clarion-inbox>
 *   <clarion-inbox recipient-id="user-42" hmac="…"></clarion-inbox>
 *
 * Attributes: recipient-id, token (from POST /api/v1/recipients/{id}/inbox-token) or hmac
 * (HMAC-SHA256 of the recipient id with the tenant's inbox secret, hex, or with the global
 * secret for items without a tenant), server (Clarion's base URL; default: where this script
 * came from), tenant (with hmac: the tenant whose secret made it; with a token: narrows it),
 * page-size (default 20), open-links ("same-tab" default, or "new-tab"), preferences ("off"
 * hides the preferences panel).
 * Events: clarion:item-click (cancelable: detail.item), clarion:counts (detail.meta),
 * clarion:auth-error. Theming: the --clarion-* custom properties below, and ::part(...).
 * Panels: ClarionInbox.registerPanel(name, {title, render(container, inbox), show?, icon?}) adds
 * a view next to the feed: a tab, or with `icon` (SVG markup) a button in the header; the
 * built-in "preferences" panel (the gear) is one. inbox.api(path, init) makes authenticated calls.
 */
(() => {
  "use strict";
  if (customElements.get("clarion-inbox")) return;

  const SCRIPT_ORIGIN = document.currentScript && document.currentScript.src
    ? new URL(document.currentScript.src, location.href).origin : location.origin;
  const PANELS = new Map();

  /** Whether `value` is an http(s) URL (relative ones resolve against the page). */
  function webUrl(value) {
    if (typeof value !== "string" || !value) return false;
    try { return ["http:", "https:"].includes(new URL(value, location.href).protocol); }
    catch (error) { return false; }
  }

  /** The widget's styles as a constructed stylesheet, shared by every instance: no inline
   *  <style>, so an embedding page's strict Content-Security-Policy (a style-src without
   *  'unsafe-inline') does not block them. Browsers without constructed stylesheets get a
   *  <style> element. */
  let sheet = null;
  function adoptStyle(root) {
    if ("adoptedStyleSheets" in ShadowRoot.prototype && "replaceSync" in CSSStyleSheet.prototype) {
      if (!sheet) { sheet = new CSSStyleSheet(); sheet.replaceSync(STYLE); }
      root.adoptedStyleSheets = [sheet];
      return;
    }
    const style = document.createElement("style");
    style.textContent = STYLE;
    root.prepend(style);
  }

  const STYLE = `
    :host { --clarion-accent: #4f46e5; --clarion-bg: #fff; --clarion-fg: #111827;
      --clarion-muted: #4b5563; --clarion-border: #e5e7eb; --clarion-unread-bg: #eef2ff;
      --clarion-hover-bg: #f9fafb; --clarion-badge-bg: #dc2626; --clarion-badge-fg: #fff;
      --clarion-error: #b91c1c;
      --clarion-radius: 10px; --clarion-width: 380px; --clarion-max-height: 480px;
      --clarion-font: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
      --clarion-shadow: 0 10px 30px rgba(0,0,0,.15);
      display: inline-block; position: relative; font-family: var(--clarion-font);
      color: var(--clarion-fg); }
    button { font: inherit; color: inherit; }
    :focus-visible { outline: 2px solid var(--clarion-accent); outline-offset: 2px; }
    .bell { position: relative; background: none; border: 0; padding: 6px; cursor: pointer;
      border-radius: 50%; line-height: 0; color: var(--clarion-fg); }
    .bell:hover { background: var(--clarion-hover-bg); }
    .bell svg { width: 24px; height: 24px; }
    .badge { position: absolute; top: 0; right: 0; min-width: 18px; height: 18px; padding: 0 5px;
      box-sizing: border-box; border-radius: 9px; background: var(--clarion-badge-bg);
      color: var(--clarion-badge-fg); font-size: 11px; font-weight: 600; line-height: 18px;
      text-align: center; }
    .badge[hidden] { display: none; }
    .panel { position: absolute; right: 0; top: calc(100% + 6px); z-index: 1000;
      width: var(--clarion-width); max-width: 95vw; background: var(--clarion-bg);
      border: 1px solid var(--clarion-border); border-radius: var(--clarion-radius);
      box-shadow: var(--clarion-shadow); overflow: hidden; }
    .panel[hidden] { display: none; }
    header { display: flex; align-items: center; justify-content: space-between; gap: 8px;
      padding: 10px 14px; border-bottom: 1px solid var(--clarion-border); }
    header h2 { flex: 1; margin: 0; font-size: 15px; }
    .actions { display: flex; align-items: center; gap: 4px; }
    .icon { background: none; border: 0; padding: 4px; border-radius: 6px; cursor: pointer;
      line-height: 0; color: var(--clarion-muted); }
    .icon:hover { color: var(--clarion-fg); background: var(--clarion-hover-bg); }
    .icon svg { width: 18px; height: 18px; }
    .icon[hidden], .link[hidden] { display: none; }
    .link { background: none; border: 0; color: var(--clarion-accent); cursor: pointer;
      font-size: 13px; padding: 2px 4px; border-radius: 4px; }
    .link:disabled { color: var(--clarion-muted); cursor: default; }
    nav { display: flex; gap: 4px; padding: 6px 10px 0; }
    nav[hidden] { display: none; }
    nav button { background: none; border: 0; border-bottom: 2px solid transparent;
      padding: 4px 8px; cursor: pointer; font-size: 13px; }
    nav button[aria-selected="true"] { border-bottom-color: var(--clarion-accent); }
    .view { max-height: var(--clarion-max-height); overflow-y: auto; }
    .view[hidden] { display: none; }
    ul { list-style: none; margin: 0; padding: 0; }
    li { display: flex; align-items: flex-start; border-bottom: 1px solid var(--clarion-border); }
    li.unread { background: var(--clarion-unread-bg); }
    .item { flex: 1; display: flex; gap: 10px; text-align: left; background: none; border: 0;
      padding: 12px 8px 12px 14px; cursor: pointer; min-width: 0; }
    .item:hover { background: var(--clarion-hover-bg); }
    .dot { flex: none; width: 8px; height: 8px; margin-top: 6px; border-radius: 50%;
      background: transparent; }
    li.unread .dot { background: var(--clarion-accent); }
    .avatar { flex: none; width: 32px; height: 32px; border-radius: 50%; object-fit: cover; }
    .text { min-width: 0; }
    .body { font-size: 14px; line-height: 1.4; overflow-wrap: anywhere; }
    time { display: block; margin-top: 3px; font-size: 12px; color: var(--clarion-muted); }
    .approval { display: flex; flex: none; align-items: center; gap: 6px; padding: 8px 4px; }
    .approval .answer { font: inherit; font-size: 13px; border: 0; border-radius: 6px;
      padding: 4px 10px; cursor: pointer; color: #fff; }
    .approval .answer.approved { background: #15803d; }
    .approval .answer.rejected { background: #b91c1c; }
    .approval .answer:disabled { opacity: .6; cursor: default; }
    .approval-status { font-size: 13px; }
    .archive { flex: none; background: none; border: 0; cursor: pointer; padding: 12px 12px;
      color: var(--clarion-muted); font-size: 13px; }
    .archive:hover { color: var(--clarion-fg); }
    .empty, .status { padding: 32px 16px; text-align: center; color: var(--clarion-muted);
      font-size: 14px; }
    .status { padding: 10px; font-size: 12px; }
    .sentinel { height: 1px; }
    .sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0);
      clip-path: inset(50%); white-space: nowrap; }
    .prefs { padding: 0 14px 10px; font-size: 14px; }
    .prefs fieldset { margin: 12px 0 0; padding: 0 0 10px; min-width: 0; border: 0;
      border-bottom: 1px solid var(--clarion-border); }
    .prefs fieldset:last-child { border-bottom: 0; }
    .prefs legend { padding: 0; font-weight: 600; font-size: 14px; }
    .prefs .hint { margin: 2px 0 4px; color: var(--clarion-muted); font-size: 12px; }
    .prefs .row { display: flex; flex-wrap: wrap; align-items: center; gap: 4px 14px;
      padding: 5px 0; }
    .prefs .row .name { flex: 1 1 8em; font-size: 13px; }
    .prefs .workflow .name { padding-left: 12px; }
    .prefs .error { margin: 10px 0 0; padding: 8px 10px; border-radius: 6px;
      border: 1px solid var(--clarion-error); color: var(--clarion-error); font-size: 13px; }
    .prefs .error[hidden] { display: none; }
    .prefs .note { margin: 0; padding: 24px 0; text-align: center; color: var(--clarion-muted); }
    .switch { display: inline-flex; align-items: center; gap: 6px; cursor: pointer;
      font-size: 13px; }
    .switch input { appearance: none; -webkit-appearance: none; position: relative; flex: none;
      width: 30px; height: 18px; margin: 0; border-radius: 9px; cursor: pointer;
      background: var(--clarion-muted); transition: background .15s; }
    .switch input::before { content: ""; position: absolute; top: 2px; left: 2px; width: 14px;
      height: 14px; border-radius: 50%; background: var(--clarion-bg);
      box-shadow: 0 1px 2px rgba(0,0,0,.3); transition: transform .15s; }
    .switch input:checked { background: var(--clarion-accent); }
    .switch input:checked::before { transform: translateX(12px); }
  `;
  const BELL = `<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2"
    stroke-linecap="round" stroke-linejoin="round" aria-hidden="true"><path d="M18 8a6 6 0 0 0-12
    0c0 7-3 9-3 9h18s-3-2-3-9"/><path d="M13.73 21a2 2 0 0 1-3.46 0"/></svg>`;
  const GEAR = `<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2"
    stroke-linecap="round" stroke-linejoin="round" aria-hidden="true"><circle cx="12" cy="12"
    r="3"/><path d="M19.4 15a1.65 1.65 0 0 0 .33 1.82l.06.06a2 2 0 1 1-2.83 2.83l-.06-.06a1.65
    1.65 0 0 0-1.82-.33 1.65 1.65 0 0 0-1 1.51V21a2 2 0 0 1-4 0v-.09A1.65 1.65 0 0 0 9 19.4a1.65
    1.65 0 0 0-1.82.33l-.06.06a2 2 0 1 1-2.83-2.83l.06-.06A1.65 1.65 0 0 0 4.68 15a1.65 1.65 0 0
    0-1.51-1H3a2 2 0 0 1 0-4h.09A1.65 1.65 0 0 0 4.6 9a1.65 1.65 0 0 0-.33-1.82l-.06-.06a2 2 0 1 1
    2.83-2.83l.06.06A1.65 1.65 0 0 0 9 4.68a1.65 1.65 0 0 0 1-1.51V3a2 2 0 0 1 4 0v.09a1.65 1.65 0
    0 0 1 1.51 1.65 1.65 0 0 0 1.82-.33l.06-.06a2 2 0 1 1 2.83 2.83l-.06.06A1.65 1.65 0 0 0 19.4
    9a1.65 1.65 0 0 0 1.51 1H21a2 2 0 0 1 0 4h-.09a1.65 1.65 0 0 0-1.51 1z"/></svg>`;
  const BACK = `<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2"
    stroke-linecap="round" stroke-linejoin="round" aria-hidden="true"><path d="M15 18l-6-6 6-6"/>
    </svg>`;

  function relativeTime(iso, now = Date.now()) {
    const seconds = Math.round((new Date(iso).getTime() - now) / 1000);
    const format = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
    const units = [["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400],
                   ["hour", 3600], ["minute", 60]];
    for (const [unit, size] of units) {
      if (Math.abs(seconds) >= size) return format.format(Math.round(seconds / size), unit);
    }
    return Math.abs(seconds) < 45 ? format.format(0, "second") : format.format(seconds, "second");
  }

  class ClarionInbox extends HTMLElement {
    static get observedAttributes() {
      return ["recipient-id", "token", "hmac", "server", "tenant", "preferences"];
    }

    /** Add a view beside the feed: render(container, inbox) is called when it is first shown,
     *  show(container, inbox) (optional) every time it is shown. With `icon` (SVG markup), a
     *  button in the header opens it (with a back button to the feed); otherwise a tab. */
    static registerPanel(name, panel) {
      PANELS.set(name, panel);
      document.querySelectorAll("clarion-inbox").forEach((el) => el._renderNav && el._renderNav());
    }

    constructor() {
      super();
      this.items = new Map();      // id → item, for the items on screen
      this.after = undefined;      // cursor of the next, older page (null: no more)
      this.meta = { unread_count: 0, unseen_count: 0, total_count: 0 };
      this.socket = null;
      this.retries = 0;
      this.loading = false;
      this.connected = false;
      const root = this.attachShadow({ mode: "open" });
      root.innerHTML = `<button class="bell" part="bell" type="button" aria-haspopup="dialog"
          aria-expanded="false" aria-label="Notifications">${BELL}
          <span class="badge" part="badge" hidden></span></button>
        <div class="panel" part="panel" role="dialog" aria-label="Notifications" tabindex="-1"
          hidden>
          <header>
            <button class="icon back" type="button" part="back"
              aria-label="Back to notifications" hidden>${BACK}</button>
            <h2>Notifications</h2>
            <span class="actions">
              <button class="link mark-all" type="button" part="mark-all">Mark all read</button>
            </span>
          </header>
          <nav role="tablist" aria-label="Inbox views" hidden></nav>
          <div class="view feed-view" data-view="feed" role="tabpanel">
            <ul class="feed" part="feed" role="list" aria-live="polite"></ul>
            <div class="empty" part="empty" hidden>You're all caught up.</div>
            <div class="status" hidden></div>
            <div class="sentinel"></div>
          </div>
        </div>`;
      adoptStyle(root);
      this.$ = (selector) => root.querySelector(selector);
      this.$(".bell").addEventListener("click", () => this.toggle());
      this.$(".mark-all").addEventListener("click", () => this.markAllRead());
      this.$(".back").addEventListener("click", () => this.showView("feed", { focus: true }));
      this.$(".panel").addEventListener("keydown", (event) => this._onKey(event));
      this._outside = (event) => {
        if (!this.$(".panel").hidden && !event.composedPath().includes(this)) this.close();
      };
      this._tick = null;
    }

    connectedCallback() {
      document.addEventListener("click", this._outside);
      this._observer = new IntersectionObserver((entries) => {
        if (entries.some((e) => e.isIntersecting)) this.loadMore();
      }, { root: this.$(".feed-view") });
      this._observer.observe(this.$(".sentinel"));
      this._tick = setInterval(() => this._refreshTimes(), 30000);
      this._renderNav();
      this.start();
    }

    disconnectedCallback() {
      document.removeEventListener("click", this._outside);
      if (this._observer) this._observer.disconnect();
      clearInterval(this._tick);
      this._closeSocket();
    }

    attributeChangedCallback(name, oldValue, newValue) {
      if (name === "preferences") { this._renderNav(); return; }
      if (oldValue !== newValue && this.isConnected && this._started) this.start();
    }

    // --- credentials and HTTP -------------------------------------------------------------

    get server() { return (this.getAttribute("server") || SCRIPT_ORIGIN).replace(/\/$/, ""); }
    get pageSize() { return Math.min(Math.max(+this.getAttribute("page-size") || 20, 1), 100); }

    _headers() {
      const token = this.getAttribute("token");
      if (token) return { Authorization: `Bearer ${token}` };
      const tenant = this.getAttribute("tenant");
      // Percent-encoded: a header carries Latin-1 only, and ids may hold any character.
      return { "X-Clarion-Recipient": encodeURIComponent(this.getAttribute("recipient-id") || ""),
               "X-Clarion-Hmac": this.getAttribute("hmac") || "",
               ...(tenant ? { "X-Clarion-Tenant": tenant } : {}) };
    }

    /** An authenticated call to Clarion's API under /api/v1/inbox/ (for panels too). */
    async api(path, { method = "GET", body, query } = {}) {
      const url = new URL(`${this.server}/api/v1/inbox/${path}`);
      const tenant = this.getAttribute("tenant");
      for (const [key, value] of Object.entries({ ...(tenant ? { tenant } : {}), ...query })) {
        if (value !== undefined && value !== null) url.searchParams.set(key, value);
      }
      const headers = { Accept: "application/json", ...this._headers() };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      const response = await fetch(url, { method, headers, keepalive: method !== "GET",
        body: body === undefined ? undefined : JSON.stringify(body) });
      if (response.status === 401) this._authError();
      if (!response.ok) throw new Error(`Clarion ${method} ${path}: ${response.status}`);
      return response.json();
    }

    _authError() {
      this._status("Could not sign in to notifications.");
      this.dispatchEvent(new CustomEvent("clarion:auth-error", { bubbles: true, composed: true }));
    }

    // --- feed -----------------------------------------------------------------------------

    async start() {
      this._started = true;
      this._closeSocket();
      this.items.clear();
      this.$(".feed").replaceChildren();
      this.after = undefined;
      this.retries = 0;
      const panel = PANELS.get(this._view);  // a panel on screen reloads with the new credentials
      if (panel && panel.show) panel.show(this.$(`.view[data-view="${this._view}"]`), this);
      try {
        await this.loadMore();
      } catch (error) {
        this._status("Notifications are unavailable.");
      }
      this._connect();
    }

    async loadMore() {
      if (this.loading || this.after === null) return;
      this.loading = true;
      try {
        const query = { limit: this.pageSize, ...(this.after ? { after: this.after } : {}) };
        const page = await this.api("", { query });
        for (const item of page.items) this._put(item, "end");
        this.after = page.page_info.after;
        this._setMeta(page.meta);
      } finally {
        this.loading = false;
        this._renderEmpty();
      }
    }

    /** Fetch what is newer than the newest item shown (the `before` cursor), or than `from`
     *  (the server's `resync` frame: pushes after that id were lost); then, unless `states` is
     *  false, refresh the first page's states (reads and archives made while this tab was
     *  offline). Runs on every (re)connect of the socket. */
    async resync({ states = true, from = null } = {}) {
      let newest = from ?? Math.max(0, ...this.items.keys());
      if (newest || from !== null) {
        for (let guard = 0; guard < 20; guard++) {
          const page = await this.api("", { query: { before: newest, limit: 100 } });
          for (const item of page.items.slice().reverse()) this._put(item, "start");
          this._setMeta(page.meta);
          if (!page.items.length || page.items.length < 100) break;
          newest = Math.max(newest, ...page.items.map((item) => item.id));
        }
      }
      if (from !== null) { this._renderEmpty(); return; }
      if (!states && newest) return;
      const first = await this.api("", { query: { limit: this.pageSize } });
      const current = new Set(first.items.map((item) => item.id));
      // The ids the first page covers: all of them when it is the only page.
      const cutoff = first.page_info.after === null || !first.items.length
        ? 0 : first.items[first.items.length - 1].id;
      for (const item of first.items) this._put(item, "start");
      for (const id of [...this.items.keys()]) {
        if (id >= cutoff && !current.has(id)) this._remove(id);  // archived elsewhere
      }
      if (!newest) this.after = first.page_info.after;
      this._setMeta(first.meta);
      this._renderEmpty();
    }

    async markRead(id) { return this._mark(id, "read"); }

    async _mark(id, action) {
      const item = await this.api(`items/${id}/${action}`, { method: "POST" });
      if (item.archived_at) this._remove(id); else this._put(item);
      return item;
    }

    /** The id of the newest item on screen (0: none). A bulk mark sends it as `up_to`, so an
     *  item that arrived after the feed was drawn is not marked unseen by the person. */
    newestShown() {
      let newest = 0;
      for (const id of this.items.keys()) if (id > newest) newest = id;
      return newest;
    }

    /** POST a bulk mark ("seen", "read" or "archive-read") of the items up to the newest shown;
     *  applies it on screen and answers the server's result (null when nothing is shown). */
    async _markAll(action) {
      const upTo = this.newestShown();
      if (!upTo) return null;
      const tenant = this.getAttribute("tenant");
      const result = await this.api(action, { method: "POST",
        body: { up_to: upTo, ...(tenant ? { tenant } : {}) } });
      this._applyBulk({ action: action.replace("-", "_"), at: new Date().toISOString(),
                        up_to: upTo });
      this._setMeta(result.meta);
      return result;
    }

    async markAllRead() { return this._markAll("read"); }

    async archive(id) {
      await this._mark(id, "archived");
      this._renderEmpty();
    }

    async _open(item) {
      const event = new CustomEvent("clarion:item-click", { detail: { item }, cancelable: true,
                                                             bubbles: true, composed: true });
      const follow = this.dispatchEvent(event) && item.action_url;
      try {
        await this._mark(item.id, "clicked");
      } catch (error) { /* the link still works */ }
      if (!follow) return;
      const url = new URL(item.action_url, location.href);
      if (!["http:", "https:"].includes(url.protocol)) return;  // never javascript: URLs
      if (this.getAttribute("open-links") === "new-tab") window.open(url, "_blank", "noopener");
      else location.assign(url);
    }

    // --- rendering ------------------------------------------------------------------------

    _put(item, where) {
      const existing = this.$(`li[data-id="${item.id}"]`);
      if (item.archived_at) { if (existing) this._remove(item.id); return; }
      if (!existing && where === undefined) return;  // an update of an item not on screen
      this.items.set(item.id, item);
      const li = existing || document.createElement("li");
      li.dataset.id = item.id;
      li.className = item.read_at ? "read" : "unread";
      li.setAttribute("part", item.read_at ? "item" : "item unread");
      li.replaceChildren();
      const button = document.createElement("button");
      button.type = "button";
      button.className = "item";
      const dot = document.createElement("span");
      dot.className = "dot";
      button.append(dot);
      if (webUrl(item.avatar)) {  // never a javascript: or other scheme's "image"
        const img = document.createElement("img");
        img.className = "avatar"; img.src = item.avatar; img.alt = "";
        button.append(img);
      }
      const text = document.createElement("span");
      text.className = "text";
      const body = document.createElement("span");
      body.className = "body";
      body.textContent = item.body;  // text, never HTML
      const time = document.createElement("time");
      time.dateTime = item.created_at;
      time.textContent = relativeTime(item.created_at);
      if (!item.read_at) {  // named by what it shows (WCAG 2.5.3), "Unread" said, not shown
        const state = document.createElement("span");
        state.className = "sr";
        state.textContent = "Unread: ";
        text.append(state);
      }
      text.append(body, time);
      button.append(text);
      button.addEventListener("click", () => this._open(this.items.get(item.id) || item));
      const archive = document.createElement("button");
      archive.type = "button";
      archive.className = "archive";
      archive.setAttribute("part", "archive");
      archive.setAttribute("aria-label", `Archive: ${item.body}`);
      archive.title = "Archive";
      archive.textContent = "✕";
      archive.addEventListener("click", (event) => { event.stopPropagation(); this.archive(item.id); });
      const approval = item.content && item.content.approval;
      if (approval && Array.isArray(approval.actions)) li.append(button, this._approval(item), archive);
      else li.append(button, archive);
      if (!existing) {
        const list = this.$(".feed");
        if (where === "end") list.append(li);
        else {
          // Keep newest first: before the first item with a smaller id.
          const next = [...list.children].find((child) => +child.dataset.id < item.id);
          list.insertBefore(li, next || null);
        }
      }
      this._renderEmpty();
    }

    /** An approval's answers (Approve / Reject), or how it was answered. Each answer posts to
     *  its signed link; the first answer from any channel wins, a later one is told so. */
    _approval(item) {
      const approval = item.content.approval;
      const box = document.createElement("div");
      box.className = "approval";
      box.setAttribute("part", "approval");
      const status = document.createElement("span");
      status.className = "approval-status";
      status.setAttribute("role", "status");
      const words = { approved: "Approved", rejected: "Rejected", expired: "Expired" };
      if (approval.status !== "pending") {
        status.textContent = words[approval.status] || approval.status;
        box.append(status);
        return box;
      }
      for (const action of approval.actions) {
        const answer = document.createElement("button");
        answer.type = "button";
        answer.className = `answer ${action.decision}`;
        answer.setAttribute("part", `answer ${action.decision}`);
        answer.textContent = action.label;
        answer.addEventListener("click", (event) => {
          event.stopPropagation();
          this._answer(item, action, box, status);
        });
        box.append(answer);
      }
      box.append(status);
      return box;
    }

    async _answer(item, action, box, status) {
      for (const button of box.querySelectorAll("button")) button.disabled = true;
      let answer;
      try {
        const response = await fetch(action.url, { method: "POST",
          headers: { Accept: "application/json", "Content-Type": "application/json" },
          body: "{}" });
        answer = await response.json();
      } catch (error) {
        for (const button of box.querySelectorAll("button")) button.disabled = false;
        status.textContent = "Could not send your answer; try again.";
        return;
      }
      const approval = answer.approval;
      if (approval) {
        item.content.approval = { ...item.content.approval, status: approval.status };
        for (const button of box.querySelectorAll("button")) button.remove();
      } else {
        for (const button of box.querySelectorAll("button")) button.disabled = false;
      }
      const words = { approved: "Approved", rejected: "Rejected", expired: "Expired" };
      status.textContent = answer.answered ? (words[approval.status] || approval.status)
                                           : (answer.detail || "Could not answer.");
      this.dispatchEvent(new CustomEvent("clarion:approval-answered", {
        detail: { item, approval, answered: Boolean(answer.answered) }, bubbles: true,
        composed: true }));
      if (!item.read_at) this._mark(item.id, "read").catch(() => {});
    }

    _remove(id) {
      this.items.delete(id);
      const li = this.$(`li[data-id="${id}"]`);
      if (li) {
        const focused = this.shadowRoot.activeElement && li.contains(this.shadowRoot.activeElement);
        const neighbour = li.nextElementSibling || li.previousElementSibling;
        li.remove();
        if (focused) (neighbour ? neighbour.querySelector(".item") : this.$(".mark-all")).focus();
      }
      this._renderEmpty();
    }

    _setMeta(meta) {
      if (!meta) return;
      this.meta = meta;
      const badge = this.$(".badge");
      const unread = meta.unread_count;
      badge.hidden = unread === 0;
      badge.textContent = unread > 99 ? "99+" : String(unread);
      this.$(".bell").setAttribute("aria-label",
        unread ? `Notifications, ${unread} unread` : "Notifications");
      this.$(".mark-all").disabled = unread === 0;
      this.dispatchEvent(new CustomEvent("clarion:counts", { detail: { meta }, bubbles: true,
                                                            composed: true }));
    }

    _renderEmpty() {
      this.$(".empty").hidden = this.items.size > 0 || this.loading;
    }

    _status(text) {
      const status = this.$(".status");
      status.textContent = text || "";
      status.hidden = !text;
    }

    _refreshTimes() {
      this.shadowRoot.querySelectorAll("time").forEach((time) => {
        time.textContent = relativeTime(time.dateTime);
      });
    }

    /** The registered panels this element offers (`preferences="off"` hides that one). */
    _panels() {
      return [...PANELS].filter(([name]) =>
        !(name === "preferences" && this.getAttribute("preferences") === "off"));
    }

    _renderNav() {
      const nav = this.$("nav");
      if (!nav) return;
      const current = this._view || "feed";
      const tabs = this._panels().filter(([, panel]) => !panel.icon);
      nav.hidden = tabs.length === 0;
      nav.replaceChildren();
      for (const [name, panel] of [["feed", { title: "Notifications" }], ...tabs]) {
        const tab = document.createElement("button");
        tab.type = "button";
        tab.setAttribute("role", "tab");
        tab.dataset.view = name;
        tab.textContent = panel.title || name;
        tab.setAttribute("aria-selected", String(name === current));
        tab.addEventListener("click", () => this.showView(name));
        nav.append(tab);
      }
      const actions = this.$(".actions");
      actions.querySelectorAll(".icon").forEach((button) => button.remove());
      for (const [name, panel] of this._panels().filter(([, p]) => p.icon)) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "icon";
        button.dataset.view = name;
        button.setAttribute("part", `${name}-button`);
        button.setAttribute("aria-label", panel.title || name);
        button.title = panel.title || name;
        button.innerHTML = panel.icon;
        button.hidden = current !== "feed";
        button.addEventListener("click", () => this.showView(name, { focus: true }));
        actions.append(button);
      }
      if (current !== "feed" && !this._panels().some(([name]) => name === current)) {
        this.showView("feed");
      }
    }

    /** Show the feed or a registered panel; `focus` moves the focus into it (the back button
     *  of a panel, or the button that opened the panel when going back to the feed). */
    showView(name, { focus = false } = {}) {
      const previous = this._view || "feed";
      const panel = PANELS.get(name);
      if (name !== "feed" && !panel) return;
      this._view = name;
      let view = this.$(`.view[data-view="${name}"]`);
      if (!view && panel) {
        view = document.createElement("div");
        view.className = "view";
        view.dataset.view = name;
        view.setAttribute("role", panel.icon ? "region" : "tabpanel");
        view.setAttribute("aria-label", panel.title || name);
        view.tabIndex = -1;
        this.$(".panel").append(view);
        panel.render(view, this);
      }
      this.shadowRoot.querySelectorAll(".view").forEach((v) => { v.hidden = v !== view; });
      this.$(".mark-all").hidden = name !== "feed";
      this.$("header h2").textContent = name === "feed" ? "Notifications" : panel.title || name;
      this.$(".back").hidden = name === "feed" || !panel.icon;
      this._renderNav();
      if (panel && panel.show) panel.show(view, this);
      if (!focus) return;
      if (name !== "feed") (panel.icon ? this.$(".back") : view).focus();
      else {
        const opener = this.$(`.actions .icon[data-view="${previous}"]`);
        (opener || this.$(".item") || this.$(".panel")).focus();
      }
    }

    // --- open / close, keyboard ------------------------------------------------------------

    toggle() { if (this.$(".panel").hidden) this.open(); else this.close(); }

    open() {
      this.$(".panel").hidden = false;
      this.$(".bell").setAttribute("aria-expanded", "true");
      this._refreshTimes();
      const view = this._view || "feed";
      if (view === "feed") (this.$(".item") || this.$(".panel")).focus();
      else (this.$(".back").hidden ? this.$(`.view[data-view="${view}"]`) : this.$(".back")).focus();
      if (this.meta.unseen_count > 0) this._markAll("seen").catch(() => {});
    }

    close({ focusBell = false } = {}) {
      this.$(".panel").hidden = true;
      this.$(".bell").setAttribute("aria-expanded", "false");
      if (focusBell) this.$(".bell").focus();
    }

    _onKey(event) {
      if (event.key === "Escape") { event.preventDefault(); this.close({ focusBell: true }); return; }
      if (!["ArrowDown", "ArrowUp", "Home", "End"].includes(event.key)) return;
      if ((this._view || "feed") !== "feed") return;  // the keys are the panel's own there
      const buttons = [...this.shadowRoot.querySelectorAll(".item")];
      if (!buttons.length) return;
      const index = buttons.indexOf(this.shadowRoot.activeElement);
      const next = { ArrowDown: Math.min(index + 1, buttons.length - 1),
                     ArrowUp: Math.max(index - 1, 0), Home: 0, End: buttons.length - 1 }[event.key];
      event.preventDefault();
      buttons[next].focus();
      if (next === buttons.length - 1) this.loadMore();
    }

    // --- websocket: push, heartbeats, reconnect with backoff ---------------------------------

    _socketUrl() {
      const url = new URL(`${this.server}/ws/inbox/`);
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      const token = this.getAttribute("token");
      if (token) url.searchParams.set("token", token);
      else {
        url.searchParams.set("recipient", this.getAttribute("recipient-id") || "");
        url.searchParams.set("hmac", this.getAttribute("hmac") || "");
      }
      if (this.getAttribute("tenant")) url.searchParams.set("tenant", this.getAttribute("tenant"));
      return url;
    }

    _connect() {
      const socket = new WebSocket(this._socketUrl());
      this.socket = socket;
      let synced = false;
      socket.addEventListener("message", (event) => {
        this._lastFrame = Date.now();
        const frame = JSON.parse(event.data);
        if (!synced) {  // the first frame (the counts) says the socket is authenticated
          synced = true;
          this.connected = true;
          this.setAttribute("data-connected", "");
          const reconnect = this.retries > 0;
          this.retries = 0;
          this._status("");
          // Items written between the first page and this socket (or while it was down).
          this.resync({ states: reconnect }).catch(() => {});
        }
        this._onFrame(frame);
      });
      socket.addEventListener("close", (event) => {
        if (this.socket !== socket) return;  // replaced on purpose
        this.connected = false;
        this.removeAttribute("data-connected");
        clearInterval(this._watchdog);
        if (event.code === 4401) { this._authError(); return; }
        this._reconnectLater();
      });
      clearInterval(this._watchdog);
      this._lastFrame = Date.now();
      this._watchdog = setInterval(() => {
        // The server beats every 25 s; silence for 70 s means a dead connection.
        if (Date.now() - this._lastFrame > 70000) socket.close();
        else if (socket.readyState === WebSocket.OPEN) socket.send('{"type":"ping"}');
      }, 30000);
    }

    _reconnectLater() {
      const delay = Math.min(30000, 1000 * 2 ** this.retries) * (0.5 + Math.random() / 2);
      this.retries += 1;
      this._status("Reconnecting…");
      clearTimeout(this._reconnectTimer);
      this._reconnectTimer = setTimeout(() => { if (this.isConnected) this._connect(); }, delay);
    }

    _closeSocket() {
      clearTimeout(this._reconnectTimer);
      clearInterval(this._watchdog);
      if (this.socket) {
        const socket = this.socket;
        this.socket = null;
        socket.close();
      }
    }

    _onFrame(frame) {
      switch (frame.type) {
        case "counts.changed": this._setMeta(frame.meta); break;
        case "item.created": this._put(frame.item, "start"); break;
        case "item.updated": this._put(frame.item); break;
        case "items.updated": this._applyBulk(frame); break;
        case "resync": this.resync({ from: frame.before }).catch(() => {}); break;
        default: break;  // heartbeat, pong
      }
    }

    /** A bulk mark made here or in another tab: only the items up to its `up_to`, and when it
     *  has a `tenant`, only the items whose tenant is that (null: the items without one). */
    _applyBulk({ action, at, up_to: upTo, tenant }) {
      for (const item of [...this.items.values()]) {
        if (upTo != null && item.id > upTo) continue;
        if (tenant !== undefined && item.tenant !== tenant) continue;
        if (action === "read" && !item.read_at) this._put({ ...item, read_at: at, seen_at: item.seen_at || at });
        else if (action === "seen" && !item.seen_at) this.items.set(item.id, { ...item, seen_at: at });
        else if (action === "archive_read" && item.read_at) this._remove(item.id);
      }
    }
  }

  // --- the preferences panel ----------------------------------------------------------------
  // GET /api/v1/inbox/preferences/center says what to show (each toggle as it applies now);
  // each change PATCHes /api/v1/inbox/preferences with that one toggle, then re-reads the center
  // (a category switched off switches its workflows off on that channel).

  /** The smallest PreferenceSet change for one switch. */
  function preferenceChange(kind, key, channel, on) {
    const channels = { channel_types: { [channel]: on } };
    if (kind === "channel") return channels;
    return { [kind === "category" ? "categories" : "workflows"]: { [key]: channels } };
  }

  class PreferencesPanel {
    constructor(container, inbox) {
      this.inbox = inbox;
      this.pending = 0;
      this.queue = Promise.resolve();
      container.classList.add("prefs");
      container.setAttribute("part", "preferences");
      const error = document.createElement("p");
      error.className = "error";
      error.setAttribute("role", "alert");
      error.hidden = true;
      this.error = error;
      this.body = document.createElement("div");
      this.body.setAttribute("aria-busy", "true");
      this.body.append(this._note("Loading…"));
      this.body.addEventListener("change", (event) => this._onChange(event.target));
      container.append(error, this.body);
    }

    async load() {
      try {
        this._show(await this.inbox.api("preferences/center"));
      } catch (error) {
        if (!this.body.querySelector("input")) {
          this.body.replaceChildren(this._note("Preferences are unavailable."));
        }
      } finally {
        this.body.removeAttribute("aria-busy");
      }
    }

    _note(text) {
      const note = document.createElement("p");
      note.className = "note";
      note.textContent = text;
      return note;
    }

    /** Draw the center; when the same toggles are on screen, only update their state (the
     *  focus stays where it is). */
    _show(center) {
      if (this.pending) return;  // a newer change is on its way; its re-read will show it
      const state = new Map();
      const visit = (kind, key, channels) => channels.forEach((c) => {
        state.set(`${kind}|${key}|${c.channel}`, c.on);
      });
      visit("channel", "", center.channels);
      for (const section of center.sections) {
        if (section.category) visit("category", section.category.key, section.category.channels);
        for (const workflow of section.workflows) visit("workflow", workflow.key, workflow.channels);
      }
      const inputs = [...this.body.querySelectorAll("input")];
      if (inputs.length === state.size && inputs.every((input) => state.has(input.dataset.id))) {
        for (const input of inputs) input.checked = state.get(input.dataset.id);
        return;
      }
      const root = this.inbox.shadowRoot;
      const focused = root.activeElement && root.activeElement.dataset
        ? root.activeElement.dataset.id : undefined;
      this.body.replaceChildren(...this._build(center));
      if (focused) {
        const again = [...this.body.querySelectorAll("input")].find((i) => i.dataset.id === focused);
        if (again) again.focus();
      }
    }

    _build(center) {
      if (!center.channels.length && !center.sections.length) {
        return [this._note("There is nothing to choose yet.")];
      }
      const nodes = [];
      if (center.channels.length) {
        const set = this._fieldset("Channels",
          "Applies to everything below, unless you choose otherwise there.");
        set.append(this._row("", "channel", "", "All notifications", center.channels));
        nodes.push(set);
      }
      for (const section of center.sections) {
        const category = section.category;
        const set = this._fieldset(category ? category.name : "Other notifications",
                                   category && category.description);
        if (category) {
          set.append(this._row("All", "category", category.key, category.name, category.channels));
        }
        for (const workflow of section.workflows) {
          const row = this._row(workflow.name, "workflow", workflow.key, workflow.name,
                                workflow.channels);
          row.classList.add("workflow");
          set.append(row);
        }
        nodes.push(set);
      }
      return nodes;
    }

    _fieldset(legendText, hintText) {
      const set = document.createElement("fieldset");
      const legend = document.createElement("legend");
      legend.textContent = legendText;
      set.append(legend);
      if (hintText) {
        const hint = document.createElement("p");
        hint.className = "hint";
        hint.textContent = hintText;
        set.append(hint);
      }
      return set;
    }

    /** One line of switches: `name` shown above them; each switch is named "<what>: <channel>". */
    _row(name, kind, key, what, channels) {
      const row = document.createElement("div");
      row.className = "row";
      row.setAttribute("role", "group");
      row.setAttribute("aria-label", what);
      if (name) {
        const label = document.createElement("span");
        label.className = "name";
        label.setAttribute("aria-hidden", "true");
        label.textContent = name;
        row.append(label);
      }
      for (const channel of channels) {
        const label = document.createElement("label");
        label.className = "switch";
        label.setAttribute("part", "switch");
        const input = document.createElement("input");
        input.type = "checkbox";
        input.setAttribute("role", "switch");
        input.checked = channel.on;
        Object.assign(input.dataset, { id: `${kind}|${key}|${channel.channel}`, kind, key,
                                       channel: channel.channel });
        const context = document.createElement("span");
        context.className = "sr";
        context.textContent = `${what}: `;
        label.append(input, context, document.createTextNode(channel.name));
        row.append(label);
      }
      return row;
    }

    _onChange(input) {
      if (!input.matches || !input.matches('input[role="switch"]')) return;
      const on = input.checked;
      const { kind, key, channel } = input.dataset;
      this.error.hidden = true;
      this.pending += 1;
      this.queue = this.queue.then(async () => {
        let saved = true;
        try {
          await this.inbox.api("preferences", { method: "PATCH",
                                                body: preferenceChange(kind, key, channel, on) });
        } catch (error) {
          saved = false;
          input.checked = !on;
          this.error.textContent = "Your change could not be saved. Please try again.";
          this.error.hidden = false;
        } finally {
          this.pending -= 1;
        }
        if (saved && !this.pending) await this.load();
      });
    }
  }

  PANELS.set("preferences", {
    title: "Preferences",
    icon: GEAR,
    render(container, inbox) { container._preferences = new PreferencesPanel(container, inbox); },
    show(container) { container._preferences.load(); },
  });

  customElements.define("clarion-inbox", ClarionInbox);
  window.ClarionInbox = ClarionInbox;
})();
