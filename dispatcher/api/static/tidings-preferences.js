/*
 * <tidings-preferences>: the preference centre: which notifications reach the user on which channel,
 * email at once or in a daily digest, the user's timezone, digest time and quiet hours.
 *
 *   <script type="module" src="https://notify.example/ui/tidings-preferences.js"></script>
 *   <tidings-preferences api-base="https://notify.example" token="<a user token>" locale="en"></tidings-preferences>
 *
 * The same attributes and tokenProvider property as <tidings-inbox>. It reads GET /v1/me/preferences and
 * saves what changed with PATCH /v1/me/preferences; an error the API gives is shown next to its field.
 * Critical types are locked: their default channels always deliver, and the row says so.
 * Theme: the same CSS custom properties as <tidings-inbox>.
 */

import { TidingsElement } from "./tidings-element.js";

export const STRINGS = {
  en: {
    title: "Notification preferences",
    intro: "Choose what reaches you, and where.",
    type: "Notification",
    channels: { in_app: "In the app", email: "Email", discord: "Discord" },
    emailMode: "Email delivery",
    immediate: "Right away",
    digest: "Daily digest",
    locked: "Always on: important notices about your account and payments.",
    when: "When",
    timezone: "Time zone",
    timezoneHint: "Type to search, e.g. Europe/Paris",
    digestTime: "Daily digest at",
    quietHours: "Quiet hours (email and Discord wait until they end)",
    quietStart: "From",
    quietEnd: "To",
    save: "Save",
    saving: "Saving…",
    saved: "Saved.",
    failed: "Not saved: see the messages below.",
    loadFailed: "Your preferences could not be loaded.",
    toggle: (type, channel) => `${type}: ${channel}`,
  },
  fr: {
    title: "Préférences de notification",
    intro: "Choisissez ce qui vous parvient, et où.",
    type: "Notification",
    channels: { in_app: "Dans l'application", email: "E-mail", discord: "Discord" },
    emailMode: "Envoi des e-mails",
    immediate: "Tout de suite",
    digest: "Résumé quotidien",
    locked: "Toujours actif : avis importants sur votre compte et vos paiements.",
    when: "Quand",
    timezone: "Fuseau horaire",
    timezoneHint: "Tapez pour chercher, par ex. Europe/Paris",
    digestTime: "Résumé quotidien à",
    quietHours: "Heures calmes (e-mails et Discord attendent la fin)",
    quietStart: "De",
    quietEnd: "À",
    save: "Enregistrer",
    saving: "Enregistrement…",
    saved: "Enregistré.",
    failed: "Non enregistré : voir les messages ci-dessous.",
    loadFailed: "Vos préférences n'ont pas pu être chargées.",
    toggle: (type, channel) => `${type} : ${channel}`,
  },
};

const TIME_FIELDS = ["timezone", "digest_time", "quiet_start", "quiet_end"];

const STYLE = `
:host { display: block; max-width: 760px; background: var(--_background); }
h2 { font-size: 20px; margin: 0 0 4px; }
h3 { font-size: 16px; margin: 24px 0 8px; }
p.intro { margin: 0 0 16px; color: var(--_muted); }
table { width: 100%; border-collapse: collapse; }
th, td { padding: 8px; text-align: left; border-bottom: 1px solid rgba(0, 0, 0, .08); vertical-align: top; }
thead th { font-size: 13px; color: var(--_muted); font-weight: 600; }
td.channel { text-align: center; width: 96px; }
tbody th { font-weight: 500; }
.locked { display: block; font-size: 12px; color: var(--_muted); font-weight: 400; margin-top: 2px; }
input[type="checkbox"] { width: 18px; height: 18px; accent-color: var(--_accent); }
select, input[type="text"], input[type="time"] {
  font: inherit; padding: 6px 8px; border: 1px solid #8a93a6; border-radius: calc(var(--_radius) / 2);
  background: var(--_background); color: inherit;
}
.field { display: flex; flex-direction: column; gap: 4px; margin: 0 0 12px; }
.field label { font-size: 14px; font-weight: 600; }
fieldset { border: 0; padding: 0; margin: 0 0 12px; }
legend { font-size: 14px; font-weight: 600; margin-bottom: 4px; }
.pair { display: flex; gap: 16px; }
.hint { font-size: 12px; color: var(--_muted); }
.error { color: #b3261e; font-size: 13px; }
.error:empty { display: none; }
.actions { display: flex; align-items: center; gap: 12px; margin-top: 16px; }
button.save {
  font: inherit; padding: 8px 18px; border: 0; border-radius: var(--_radius); background: var(--_accent);
  color: #fff; cursor: pointer;
}
button.save:disabled { opacity: .6; cursor: default; }
@media (prefers-reduced-motion: reduce) { * { transition: none !important; } }
`;

export class TidingsPreferences extends TidingsElement {
  static observedAttributes = ["api-base", "token", "locale"];

  constructor() {
    super(STYLE);
    this._document = null;
  }

  get strings() {
    return STRINGS[this.getAttribute("locale")] || STRINGS.en;
  }

  connectedCallback() {
    this.load();
  }

  attributeChangedCallback(name, before, after) {
    if (this.isConnected && before !== after) this.load();
  }

  async load() {
    try {
      const response = await this.apiFetch("/v1/me/preferences");
      if (!response.ok) throw new Error(`GET /v1/me/preferences: ${response.status}`);
      this._document = await response.json();
      this._render();
    } catch (error) {
      console.warn("tidings-preferences:", error.message);
      this.shadowRoot.innerHTML = `<p role="alert"></p>`;
      this.shadowRoot.querySelector("p").textContent = this.strings.loadFailed;
    }
  }

  _render() {
    const s = this.strings;
    const doc = this._document;
    const channels = Object.keys(Object.values(doc.types)[0]?.channels || {});
    const root = this.shadowRoot;
    root.innerHTML = `<form novalidate>
        <h2></h2><p class="intro"></p>
        <table><thead><tr><th scope="col" class="type-head"></th></tr></thead><tbody></tbody></table>
        <h3 class="when"></h3>
        <div class="field"><label for="timezone"></label>
          <input type="text" id="timezone" name="timezone" list="zones" autocomplete="off" aria-describedby="timezone-hint timezone-error">
          <datalist id="zones"></datalist>
          <span class="hint" id="timezone-hint"></span><span class="error" id="timezone-error" role="alert"></span></div>
        <div class="field"><label for="digest_time"></label>
          <input type="time" id="digest_time" name="digest_time" aria-describedby="digest_time-error">
          <span class="error" id="digest_time-error" role="alert"></span></div>
        <fieldset><legend></legend><div class="pair">
          <div class="field"><label for="quiet_start"></label><input type="time" id="quiet_start" name="quiet_start" aria-describedby="quiet_start-error"><span class="error" id="quiet_start-error" role="alert"></span></div>
          <div class="field"><label for="quiet_end"></label><input type="time" id="quiet_end" name="quiet_end" aria-describedby="quiet_end-error"><span class="error" id="quiet_end-error" role="alert"></span></div>
        </div></fieldset>
        <div class="actions"><button class="save" type="submit"></button><span class="result" role="status"></span></div>
        <p class="error" id="form-error" role="alert"></p>
      </form>`;
    root.querySelector("h2").textContent = s.title;
    root.querySelector(".intro").textContent = s.intro;
    root.querySelector(".type-head").textContent = s.type;
    root.querySelector(".when").textContent = s.when;
    root.querySelector('label[for="timezone"]').textContent = s.timezone;
    root.querySelector("#timezone-hint").textContent = s.timezoneHint;
    root.querySelector('label[for="digest_time"]').textContent = s.digestTime;
    root.querySelector("legend").textContent = s.quietHours;
    root.querySelector('label[for="quiet_start"]').textContent = s.quietStart;
    root.querySelector('label[for="quiet_end"]').textContent = s.quietEnd;
    root.querySelector("button.save").textContent = s.save;
    const head = root.querySelector("thead tr");
    for (const channel of channels) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = s.channels[channel] || channel;
      head.append(th);
    }
    const digestChannels = channels.filter((c) =>
      Object.values(doc.types).some((t) => t.channels[c]?.mode !== null && t.channels[c]?.mode !== undefined),
    );
    if (digestChannels.length) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = s.emailMode;
      head.append(th);
    }
    const body = root.querySelector("tbody");
    for (const [type, prefs] of Object.entries(doc.types)) body.append(this._row(type, prefs, channels, digestChannels));
    const zones = root.querySelector("#zones");
    for (const zone of Intl.supportedValuesOf ? Intl.supportedValuesOf("timeZone") : []) {
      const option = document.createElement("option");
      option.value = zone;
      zones.append(option);
    }
    for (const name of TIME_FIELDS) root.querySelector(`#${name}`).value = doc[name] || "";
    root.querySelector("form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
  }

  _row(type, prefs, channels, digestChannels) {
    const s = this.strings;
    const row = document.createElement("tr");
    row.dataset.type = type;
    const label = prefs.description || type;
    const th = document.createElement("th");
    th.scope = "row";
    th.id = `type-${type}`;
    th.textContent = label;
    const locked = Object.values(prefs.channels).some((c) => c.locked);
    if (locked) {
      const why = document.createElement("span");
      why.className = "locked";
      why.id = `locked-${type}`;
      why.textContent = s.locked;
      th.append(why);
    }
    row.append(th);
    for (const channel of channels) {
      const cell = document.createElement("td");
      cell.className = "channel";
      const pref = prefs.channels[channel];
      const box = document.createElement("input");
      box.type = "checkbox";
      box.name = `${type}|${channel}|enabled`;
      box.checked = pref.enabled;
      box.disabled = pref.locked;
      box.setAttribute("aria-label", s.toggle(label, s.channels[channel] || channel));
      if (pref.locked) box.setAttribute("aria-describedby", `locked-${type}`);
      const error = document.createElement("span");
      error.className = "error";
      error.id = `error-${type}-${channel}`;
      error.setAttribute("role", "alert");
      cell.append(box, error);
      row.append(cell);
    }
    for (const channel of digestChannels) {
      const cell = document.createElement("td");
      const pref = prefs.channels[channel];
      const select = document.createElement("select");
      select.name = `${type}|${channel}|mode`;
      select.setAttribute("aria-label", `${label}: ${s.emailMode}`);
      for (const mode of ["immediate", "digest"]) {
        const option = document.createElement("option");
        option.value = mode;
        option.textContent = s[mode];
        select.append(option);
      }
      select.value = pref.mode || "immediate";
      select.disabled = pref.locked || !pref.enabled;
      const box = row.querySelector(`input[name="${CSS.escape(`${type}|${channel}|enabled`)}"]`);
      box?.addEventListener("change", () => {
        select.disabled = pref.locked || !box.checked;
      });
      cell.append(select);
      row.append(cell);
    }
    return row;
  }

  /** The PATCH body: what differs from the loaded document. */
  changes() {
    const root = this.shadowRoot;
    const doc = this._document;
    const body = {};
    for (const name of TIME_FIELDS) {
      const value = root.querySelector(`#${name}`).value.trim() || null;
      if (value !== (doc[name] || null)) body[name] = value;
    }
    const types = {};
    for (const [type, prefs] of Object.entries(doc.types)) {
      for (const [channel, pref] of Object.entries(prefs.channels)) {
        if (pref.locked) continue;
        const box = root.querySelector(`input[name="${CSS.escape(`${type}|${channel}|enabled`)}"]`);
        const select = root.querySelector(`select[name="${CSS.escape(`${type}|${channel}|mode`)}"]`);
        const enabled = box.checked;
        const mode = select && enabled ? select.value : null;
        if (enabled !== pref.enabled || (select && enabled && mode !== (pref.mode || "immediate"))) {
          const setting = { enabled };
          if (mode) setting.mode = mode;
          ((types[type] ??= { channels: {} }).channels)[channel] = setting;
        }
      }
    }
    if (Object.keys(types).length) body.types = types;
    return body;
  }

  async save() {
    const s = this.strings;
    const root = this.shadowRoot;
    const button = root.querySelector("button.save");
    const result = root.querySelector(".result");
    for (const error of root.querySelectorAll(".error")) error.textContent = "";
    button.disabled = true;
    result.textContent = s.saving;
    try {
      const response = await this.apiFetch("/v1/me/preferences", {
        method: "PATCH",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(this.changes()),
      });
      if (response.ok) {
        this._document = await response.json();
        result.textContent = s.saved;
        this.dispatchEvent(new CustomEvent("tidings-saved", { detail: this._document }));
        return;
      }
      const problem = await response.json().catch(() => ({}));
      this._showErrors(problem);
      result.textContent = s.failed;
    } catch (error) {
      root.querySelector("#form-error").textContent = error.message;
      result.textContent = s.failed;
    } finally {
      button.disabled = false;
    }
  }

  _showErrors(problem) {
    const root = this.shadowRoot;
    const errors = problem.errors || [{ field: "", message: problem.detail || problem.title || "error" }];
    for (const error of errors) {
      const field = String(error.field || ""); // "timezone", "types.match.started.channels.email.mode"
      let target = TIME_FIELDS.includes(field) ? root.querySelector(`#${field}-error`) : null;
      const channelMatch = /^types\.(.+)\.channels\.([^.]+)/.exec(field);
      if (!target && channelMatch) target = root.querySelector(`#${CSS.escape(`error-${channelMatch[1]}-${channelMatch[2]}`)}`);
      target ??= root.querySelector("#form-error");
      target.textContent = target.textContent ? `${target.textContent} ${error.message}` : error.message;
      const input = TIME_FIELDS.includes(field) ? root.querySelector(`#${field}`) : null;
      input?.setAttribute("aria-invalid", "true");
    }
  }
}

if (!customElements.get("tidings-preferences")) customElements.define("tidings-preferences", TidingsPreferences);
