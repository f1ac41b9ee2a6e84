// Just enough of React's hooks to run one function component in Node, without a DOM.
//
// Why: `@convex-dev/auth`'s client logic (sign-in, code exchange, token refresh, sign-out,
// the namespaced storage) lives in its React `AuthProvider` component, and React itself is
// not installed here. Scenario scripts map the `react` and `react/jsx-runtime` imports to
// this module (see `react-loader.mjs`), mount `AuthProvider`, and call the actions it
// provides, so the library's own code runs unchanged.
//
// Semantics kept from React: hook state lives in call order; `setState` with an equal value
// does nothing, otherwise it schedules a re-render (batched in a microtask); effects run
// after a render when their dependencies changed (always without a dependency list), each
// after the previous run's cleanup; `useMemo`/`useCallback` recompute on changed
// dependencies. Nothing is rendered: the component's returned element tree is kept so the
// caller can read the values handed to context providers.

let current = null;

function depsChanged(previous, next) {
  if (previous === undefined || next === undefined) {
    return true;
  }
  return previous.length !== next.length || previous.some((value, i) => !Object.is(value, next[i]));
}

function nextHook(create) {
  if (current === null) {
    throw new Error("hooks can only be called while mini-react renders a component");
  }
  const index = current.index++;
  if (current.hooks.length <= index) {
    current.hooks.push(create());
  }
  return current.hooks[index];
}

export function createContext(defaultValue) {
  const context = { _currentValue: defaultValue };
  const Provider = (props) => props.children;
  Provider._context = context;
  context.Provider = Provider;
  return context;
}

export function useContext(context) {
  return context._currentValue;
}

export function useState(initial) {
  const instance = current;
  const hook = nextHook(() => {
    const state = { value: typeof initial === "function" ? initial() : initial };
    state.set = (update) => {
      const next = typeof update === "function" ? update(state.value) : update;
      if (!Object.is(next, state.value)) {
        state.value = next;
        schedule(instance);
      }
    };
    return state;
  });
  return [hook.value, hook.set];
}

export function useRef(initial) {
  return nextHook(() => ({ current: initial }));
}

export function useMemo(compute, deps) {
  const hook = nextHook(() => ({ deps: undefined, value: undefined, fresh: true }));
  if (hook.fresh || depsChanged(hook.deps, deps)) {
    hook.value = compute();
    hook.deps = deps;
    hook.fresh = false;
  }
  return hook.value;
}

export function useCallback(callback, deps) {
  return useMemo(() => callback, deps);
}

export function useEffect(effect, deps) {
  const instance = current;
  const hook = nextHook(() => ({ deps: undefined, cleanup: undefined, fresh: true }));
  if (hook.fresh || depsChanged(hook.deps, deps)) {
    hook.fresh = false;
    hook.deps = deps;
    instance.pendingEffects.push(() => {
      if (typeof hook.cleanup === "function") {
        hook.cleanup();
      }
      const cleanup = effect();
      hook.cleanup = typeof cleanup === "function" ? cleanup : undefined;
    });
  }
}

export const useLayoutEffect = useEffect;

export function jsx(type, props, key) {
  return { type, props: props ?? {}, key };
}

export const jsxs = jsx;
export const Fragment = (props) => props.children;

export default {
  createContext,
  useContext,
  useState,
  useRef,
  useMemo,
  useCallback,
  useEffect,
  useLayoutEffect,
};

function schedule(instance) {
  if (instance.scheduled || instance.unmounted) {
    return;
  }
  instance.scheduled = true;
  queueMicrotask(() => {
    instance.scheduled = false;
    if (!instance.unmounted) {
      render(instance);
    }
  });
}

function render(instance) {
  instance.index = 0;
  current = instance;
  try {
    instance.tree = instance.Component(instance.props);
  } finally {
    current = null;
  }
  const effects = instance.pendingEffects.splice(0);
  for (const run of effects) {
    run();
  }
}

/** The `value`s handed to context providers in an element tree, outermost first. */
function providedValues(tree) {
  const values = [];
  let node = tree;
  while (node && typeof node === "object" && node.type) {
    if (node.type._context !== undefined) {
      values.push({ context: node.type._context, value: node.props.value });
    }
    node = node.props.children;
  }
  return values;
}

/**
 * Render `Component` with `props`. The handle reads what the component provides to its
 * contexts, waits for pending renders, and unmounts (running effect cleanups).
 */
export function mount(Component, props) {
  const instance = {
    Component,
    props,
    hooks: [],
    index: 0,
    pendingEffects: [],
    scheduled: false,
    unmounted: false,
    tree: null,
  };
  render(instance);
  return {
    /** Every value handed to a context provider, outermost first. */
    providedValues() {
      return providedValues(instance.tree).map((entry) => entry.value);
    },
    provided(context) {
      return providedValues(instance.tree).find((entry) => entry.context === context)?.value;
    },
    async settle() {
      for (let i = 0; i < 100 && instance.scheduled; i++) {
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
    },
    unmount() {
      instance.unmounted = true;
      for (const hook of instance.hooks) {
        if (typeof hook.cleanup === "function") {
          hook.cleanup();
        }
      }
    },
  };
}
