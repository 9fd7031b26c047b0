/*
 * What <tidings-inbox> and <tidings-preferences> share: the API's base URL, the user token (an attribute,
 * or the tokenProvider property, asked again once with {refresh: true} when the API refuses a token), the
 * requests, and a style sheet constructed once (no inline style for a host page's CSP to refuse).
 */

const SCRIPT_ORIGIN = new URL(import.meta.url).origin;

/** The theme both elements read: a host page sets the --tidings-* custom properties on the element. */
const THEME = `
:host {
  --_accent: var(--tidings-accent, #2457d6);
  --_background: var(--tidings-background, #ffffff);
  --_foreground: var(--tidings-foreground, #1c2230);
  --_muted: var(--tidings-muted, #5b6478);
  --_unread: var(--tidings-unread, #eef3ff);
  --_radius: var(--tidings-radius, 10px);
  color: var(--_foreground);
  font-family: var(--tidings-font, system-ui, -apple-system, "Segoe UI", sans-serif);
}
:focus-visible { outline: 3px solid var(--_accent); outline-offset: 2px; }
`;

export class TidingsElement extends HTMLElement {
  constructor(css) {
    super();
    /** A function returning a user token, or a promise of one; it overrides the token attribute. */
    this.tokenProvider = null;
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(THEME + css);
    this.attachShadow({ mode: "open" }).adoptedStyleSheets = [sheet];
  }

  /** Tidings' web process: the api-base attribute, or where the script came from. */
  get apiBase() {
    return (this.getAttribute("api-base") || SCRIPT_ORIGIN).replace(/\/+$/, "");
  }

  async token(refresh = false) {
    if (this.tokenProvider) return await this.tokenProvider({ refresh });
    return this.getAttribute("token");
  }

  /** fetch() of an API path with the user token; a 401 asks the tokenProvider for a fresh token, once. */
  async apiFetch(path, options = {}) {
    for (const refresh of [false, true]) {
      const token = await this.token(refresh);
      const headers = { Accept: "application/json", ...(options.headers || {}) };
      if (token) headers.Authorization = `Bearer ${token}`;
      const response = await fetch(this.apiBase + path, { ...options, headers });
      if (response.status !== 401 || !this.tokenProvider || refresh) return response;
    }
  }
}
