// Where the app finds its backend.
//
// The example server serves `/config.json` next to the built files, so one build works
// against any deployment: `{"convexUrl": "http://127.0.0.1:3210", "providers": ["google"]}`.
// Under `vite dev` there is no such file, and the app falls back to `VITE_CONVEX_URL` and
// `VITE_AUTH_PROVIDERS` (or the example's defaults).

/** What the app needs to know about its deployment. */
export interface AppConfig {
  /** Origin of the client API (the sync WebSocket and the HTTP function API). */
  convexUrl: string;
  /** Sign-in provider ids, one button each (for example `"google"`). */
  providers: string[];
  /** Where the values came from, shown in error messages. */
  source: string;
}

/** The client API address of the example server when run with no flags. */
const DEFAULT_CONVEX_URL = "http://127.0.0.1:3210";

/** A `/config.json` that exists but cannot be used; the page shows this message. */
export class ConfigError extends Error {}

function fallbackConfig(): AppConfig {
  const providers = (import.meta.env.VITE_AUTH_PROVIDERS ?? "google")
    .split(",")
    .map((id) => id.trim())
    .filter((id) => id.length > 0);
  const fromEnv = import.meta.env.VITE_CONVEX_URL;
  return {
    convexUrl: fromEnv || DEFAULT_CONVEX_URL,
    providers,
    source: fromEnv ? "VITE_CONVEX_URL" : "the built-in default",
  };
}

function parseConfig(raw: unknown, source: string): AppConfig {
  if (typeof raw !== "object" || raw === null) {
    throw new ConfigError(
      `${source} must be a JSON object like {"convexUrl": "http://127.0.0.1:3210", "providers": ["google"]}.`,
    );
  }
  const { convexUrl, providers } = raw as Record<string, unknown>;
  if (typeof convexUrl !== "string" || !/^https?:\/\//.test(convexUrl)) {
    throw new ConfigError(
      `${source} has no usable "convexUrl": expected an http:// or https:// address, found ${JSON.stringify(convexUrl)}.`,
    );
  }
  if (
    providers !== undefined &&
    (!Array.isArray(providers) ||
      !providers.every((p) => typeof p === "string"))
  ) {
    throw new ConfigError(
      `${source} has an invalid "providers": expected a list of provider ids such as ["google"].`,
    );
  }
  return { convexUrl, providers: providers ?? [], source };
}

/**
 * Reads `/config.json` from the page's own origin, or falls back to the build-time
 * environment when the file is absent (as under `vite dev`, which answers 404 or with
 * its HTML page). Throws {@link ConfigError} when the file exists but is unusable.
 */
export async function loadConfig(): Promise<AppConfig> {
  let response: Response;
  try {
    response = await fetch("/config.json", {
      cache: "no-store",
      headers: { Accept: "application/json" },
    });
  } catch {
    return fallbackConfig();
  }
  const contentType = response.headers.get("content-type") ?? "";
  if (!response.ok || !contentType.includes("json")) {
    return fallbackConfig();
  }
  let raw: unknown;
  try {
    raw = await response.json();
  } catch {
    throw new ConfigError("/config.json is not valid JSON.");
  }
  return parseConfig(raw, "/config.json");
}
