// The sign-in client of `@convex-dev/auth@0.0.95` (its `AuthProvider`, the code behind
// `ConvexAuthProvider` and `useAuthActions`) against a Conflux deployment with the built-in
// sign-in, in Node.
//
//   node tests/npm/auth_client.mjs <deploymentUrl>
//
// The library's own `dist/react/client.js` runs unchanged: `react` resolves to
// `lib/mini-react.mjs` (React is not installed here) and the component is mounted with an
// in-memory `storage` and a fake `window.location`. Its client calls go where
// `ConvexAuthProvider` sends them: `unauthenticatedCall` through a fresh `ConvexHttpClient`
// (code exchange and refresh, exactly as the library does), `authenticatedCall` through a
// `ConvexHttpClient` carrying the current token (the React app sends those over its
// authenticated WebSocket instead; the function, arguments and token are the same).
//
// Steps and events:
//   {"event":"mounted","isLoading":false,"isAuthenticated":false}
//   {"event":"redirect","redirect":...,"storedVerifier":...,"navigatedTo":...}
//   <- stdin {"landing": "<SITE_URL...?code=12345678>"}   (the test followed the redirects)
//   {"event":"signedIn","token":...,"refreshToken":...,"urlAfterReplace":...}
//   {"event":"viewer","value":...}
//   {"event":"refreshed","token":...,"refreshToken":...}
//   <- stdin {"signOut": true}
//   {"event":"signedOut","isAuthenticated":false,"storedToken":null,"storedRefreshToken":null}
//   {"event":"afterSignOut","token":null}

import { register } from "node:module";
import { deploymentUrl, emit, main, nextCommand, toJson, waitFor } from "./lib/harness.mjs";

register("./lib/react-loader.mjs", import.meta.url);

const { ConvexHttpClient } = await import("convex/browser");
const { anyApi } = await import("convex/server");
const { AuthProvider, ConvexAuthActionsContext, ConvexAuthTokenContext } = await import(
  "./node_modules/@convex-dev/auth/dist/react/client.js"
);
const { mount } = await import("./lib/mini-react.mjs");

const address = deploymentUrl();
const SITE = "https://site.example.com";

// The browser globals the library touches.
globalThis.window = {
  location: new URL(`${SITE}/`),
  addEventListener() {},
  removeEventListener() {},
};
if (globalThis.navigator === undefined) {
  globalThis.navigator = { product: "Node" };
}

/** localStorage, in memory. */
const store = new Map();
const storage = {
  getItem: (key) => (store.has(key) ? store.get(key) : null),
  setItem: (key, value) => void store.set(key, value),
  removeItem: (key) => void store.delete(key),
};
const namespace = address.replace(/[^a-zA-Z0-9]/g, "");
const stored = (key) => storage.getItem(`${key}_${namespace}`);

let rendered;
const currentToken = () => rendered?.provided(ConvexAuthTokenContext) ?? null;
const authState = () => rendered.providedValues().find((value) => value && "fetchAccessToken" in value);
const actions = () => rendered.provided(ConvexAuthActionsContext);

const client = {
  authenticatedCall(action, args) {
    const http = new ConvexHttpClient(address);
    const token = currentToken();
    if (token !== null) {
      http.setAuth(token);
    }
    return http.action(action, args);
  },
  unauthenticatedCall(action, args) {
    return new ConvexHttpClient(address).action(action, args);
  },
  verbose: false,
};

let replacedWith = null;
function mountProvider() {
  rendered?.unmount();
  rendered = mount(AuthProvider, {
    client,
    storage,
    storageNamespace: address,
    replaceURL: (url) => {
      replacedWith = url;
    },
    children: null,
  });
}

main(async () => {
  // A first visit: nothing stored, signed out.
  mountProvider();
  await rendered.settle();
  const initial = await waitFor("the provider to finish loading", () =>
    authState().isLoading ? undefined : authState(),
  );
  emit("mounted", { isLoading: initial.isLoading, isAuthenticated: initial.isAuthenticated });

  // The "Sign in with Google" button.
  const started = await actions().signIn("google", { redirectTo: "/dashboard" });
  emit("redirect", {
    redirect: started.redirect.toString(),
    signingIn: started.signingIn,
    storedVerifier: stored("__convexAuthOAuthVerifier"),
    navigatedTo: window.location.href,
  });

  // The browser went to the provider and came back to the app with ?code=.
  const { landing } = await nextCommand();
  window.location = new URL(landing);
  mountProvider();
  const signedIn = await waitFor("the code exchange", () =>
    authState().isAuthenticated ? authState() : undefined,
  );
  emit("signedIn", {
    isLoading: signedIn.isLoading,
    token: stored("__convexAuthJWT"),
    refreshToken: stored("__convexAuthRefreshToken"),
    verifierLeft: stored("__convexAuthOAuthVerifier"),
    urlAfterReplace: replacedWith,
  });

  const http = new ConvexHttpClient(address);
  http.setAuth(currentToken());
  emit("viewer", { value: toJson(await http.query(anyApi.users.viewer, {})) });

  // What ConvexProviderWithAuth does right after the first confirmation: force a refresh.
  const refreshed = await authState().fetchAccessToken({ forceRefreshToken: true });
  emit("refreshed", { token: refreshed, refreshToken: stored("__convexAuthRefreshToken") });

  const command = await nextCommand();
  if (command?.signOut) {
    await actions().signOut();
    await rendered.settle();
    emit("signedOut", {
      isAuthenticated: authState().isAuthenticated,
      storedToken: stored("__convexAuthJWT"),
      storedRefreshToken: stored("__convexAuthRefreshToken"),
    });
    emit("afterSignOut", { token: await authState().fetchAccessToken({ forceRefreshToken: true }) });
  }
  rendered.unmount();
});
