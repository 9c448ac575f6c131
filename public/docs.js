// Starts the interactive API reference on /docs from this gateway's /openapi.json, using the Scalar bundle
// vendored into /vendor (no CDN, no web fonts, no telemetry: the page works offline).
/* global Scalar */
(function start() {
  const app = document.getElementById("app");
  if (typeof Scalar === "undefined" || typeof Scalar.createApiReference !== "function") {
    // The bundle is copied at install time (npm run prepare); say what is missing instead of a blank page.
    app.innerHTML =
      '<p style="font:16px system-ui;margin:2rem">The reference viewer is not installed on this deployment ' +
      "(public/vendor/scalar/standalone.js; run <code>npm run prepare</code>). The document itself is at " +
      '<a href="/openapi.json">/openapi.json</a>.</p>';
    return;
  }
  Scalar.createApiReference("#app", {
    url: "/openapi.json",
    withDefaultFonts: false,
    telemetry: false,
    showDeveloperTools: "never",
    favicon: "/favicon.svg",
    metaData: { title: "glm-edge API reference" },
    defaultHttpClient: { targetKey: "js", clientKey: "fetch" },
    authentication: { preferredSecurityScheme: "bearerAuth" },
    // Requests from "Test request" go straight to this origin: no third-party proxy, no AI agent.
    proxyUrl: "",
    agent: { disabled: true },
  });
})();
