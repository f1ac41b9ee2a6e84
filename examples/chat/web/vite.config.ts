// Vite configuration for the chat example's web front-end.
//
// The production build lands in `dist/`, which the example server serves from the site
// origin (together with `/config.json`). The dev server keeps port 5173 fixed because
// sign-in returns to `SITE_URL`, whose default is `http://localhost:5173`.
import { defineConfig } from "vite";

export default defineConfig({
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    rolldownOptions: {
      onwarn(warning, defaultHandler) {
        // `@convex-dev/auth/react` starts with "use client" for React Server Components;
        // it means nothing in a client-only bundle.
        if (
          warning.code === "MODULE_LEVEL_DIRECTIVE" &&
          warning.message.includes('"use client"')
        ) {
          return;
        }
        defaultHandler(warning);
      },
    },
  },
  server: {
    port: 5173,
    strictPort: true,
  },
  preview: {
    port: 4173,
    strictPort: true,
  },
});
