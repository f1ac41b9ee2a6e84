// Entry point: read the deployment's address, create the official client, render the app.
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { ConvexReactClient } from "convex/react";
import { ConvexAuthProvider } from "@convex-dev/auth/react";
import { App } from "./App";
import { ConfigError, loadConfig } from "./config";
import "./styles.css";

const container = document.getElementById("root");
if (container === null) {
  throw new Error('index.html must contain <div id="root">.');
}
const root = createRoot(container);

root.render(
  <p className="status" role="status" data-testid="auth-loading">
    Loading…
  </p>,
);

loadConfig().then(
  (config) => {
    const client = new ConvexReactClient(config.convexUrl);
    root.render(
      <StrictMode>
        <ConvexAuthProvider client={client}>
          <App providers={config.providers} />
        </ConvexAuthProvider>
      </StrictMode>,
    );
  },
  (error: unknown) => {
    const message =
      error instanceof ConfigError || error instanceof Error
        ? error.message
        : String(error);
    root.render(
      <main className="app">
        <h1>Conflux chat</h1>
        <p className="error" role="alert" data-testid="config-error">
          The app could not start: {message}
        </p>
      </main>,
    );
  },
);
