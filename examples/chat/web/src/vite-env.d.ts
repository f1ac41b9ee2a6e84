/// <reference types="vite/client" />

interface ImportMetaEnv {
  /** Client API origin used by `vite dev` when the page has no `/config.json`. */
  readonly VITE_CONVEX_URL?: string;
  /** Comma-separated sign-in provider ids used by `vite dev` when the page has no `/config.json`. */
  readonly VITE_AUTH_PROVIDERS?: string;
}

interface ImportMeta {
  readonly env: ImportMetaEnv;
}
