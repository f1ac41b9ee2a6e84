// Module resolution hooks that make `react` and `react/jsx-runtime` resolve to
// `mini-react.mjs`, so that React components of the official clients can run in Node
// without React installed. Registered by scenarios with
// `register("./lib/react-loader.mjs", import.meta.url)` before importing those components.

const miniReact = new URL("./mini-react.mjs", import.meta.url).href;

export async function resolve(specifier, context, nextResolve) {
  if (specifier === "react" || specifier === "react/jsx-runtime") {
    return { url: miniReact, shortCircuit: true };
  }
  return nextResolve(specifier, context);
}
