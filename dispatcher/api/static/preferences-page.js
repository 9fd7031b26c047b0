/*
 * The page /ui/preferences: the preference centre for the user whose token the link carries in its
 * fragment (#token=…), which never reaches a server or a log. The token is taken out of the address
 * bar at once, so that it is not bookmarked or shared with the URL.
 */
import "./tidings-preferences.js";

const token = new URLSearchParams(window.location.hash.slice(1)).get("token");
if (token) window.history.replaceState(null, "", window.location.pathname + window.location.search);

const page = new CSSStyleSheet();
page.replaceSync(`
  body { margin: 0; background: #f3f4f6; }
  main { max-width: 800px; margin: 32px auto; padding: 24px; background: #fff; border-radius: 12px; }
`);
document.adoptedStyleSheets = [...document.adoptedStyleSheets, page];

const element = document.querySelector("tidings-preferences");
const locale = new URLSearchParams(window.location.search).get("locale");
if (locale) {
  element.setAttribute("locale", locale);
  document.documentElement.lang = locale;
}
if (token) element.setAttribute("token", token);
