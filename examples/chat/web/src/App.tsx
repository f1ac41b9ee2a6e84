// The chat page: sign-in buttons while signed out, the live channel while signed in.
//
// `<Authenticated>`, `<Unauthenticated>` and `<AuthLoading>` come from `convex/react` and follow
// the backend's confirmation of the token, so the two views are never shown together.
import {
  Component,
  useEffect,
  useRef,
  useState,
  type FormEvent,
  type ReactNode,
} from "react";
import {
  Authenticated,
  AuthLoading,
  Unauthenticated,
  useMutation,
  useQuery,
} from "convex/react";
import { ConvexError } from "convex/values";
import { useAuthActions } from "@convex-dev/auth/react";
import {
  CHANNEL,
  listMessages,
  sendMessage,
  viewer,
  type Message,
} from "./api";

/** The whole page for a deployment with the given sign-in providers. */
export function App({ providers }: { providers: string[] }) {
  return (
    <main className="app">
      <h1>Conflux chat</h1>
      <AuthLoading>
        <p className="status" role="status" data-testid="auth-loading">
          Loading…
        </p>
      </AuthLoading>
      <Unauthenticated>
        <SignIn providers={providers} />
      </Unauthenticated>
      <Authenticated>
        <QueryErrorBoundary>
          <Chat />
        </QueryErrorBoundary>
      </Authenticated>
    </main>
  );
}

/** The button label for a provider id: "Sign in with Google" for `google`. */
function providerLabel(id: string): string {
  return id === "google" ? "Sign in with Google" : `Sign in with ${id}`;
}

/** A readable reason for a failed call; a `ConvexError`'s `code` when it has one. */
function describeError(error: unknown): string {
  if (error instanceof ConvexError) {
    const data: unknown = error.data;
    if (
      typeof data === "object" &&
      data !== null &&
      typeof (data as { code?: unknown }).code === "string"
    ) {
      return (data as { code: string }).code;
    }
    return typeof data === "string" ? data : JSON.stringify(data);
  }
  return error instanceof Error ? error.message : String(error);
}

function SignIn({ providers }: { providers: string[] }) {
  const { signIn } = useAuthActions();
  const [pending, setPending] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  const start = (provider: string) => {
    setPending(provider);
    setError(null);
    // On success the browser leaves for the provider; only a failure returns here.
    signIn(provider).catch((e: unknown) => {
      setPending(null);
      setError(describeError(e));
    });
  };

  return (
    <section
      className="card"
      aria-labelledby="signin-heading"
      data-testid="unauthenticated"
    >
      <h2 id="signin-heading">Sign in to chat</h2>
      {providers.length === 0 ? (
        <p>This deployment has no sign-in provider configured.</p>
      ) : (
        <div className="providers">
          {providers.map((provider) => (
            <button
              key={provider}
              type="button"
              data-testid={`signin-${provider}`}
              disabled={pending !== null}
              aria-busy={pending === provider}
              onClick={() => start(provider)}
            >
              {providerLabel(provider)}
            </button>
          ))}
        </div>
      )}
      {error !== null && (
        <p className="error" role="alert" data-testid="signin-error">
          Sign-in failed: {error}
        </p>
      )}
    </section>
  );
}

function Chat() {
  const me = useQuery(viewer, {});
  // "loading" until the first result; "no-user" if the backend knows no user for the token.
  const state =
    me === undefined ? "loading" : me === null ? "no-user" : "ready";
  const name =
    me === undefined
      ? "…"
      : me === null
        ? "an unknown user"
        : (me.name ?? me.email ?? "an unnamed user");

  return (
    <section className="card" aria-labelledby="channel-heading">
      <header className="chat-header">
        <p data-testid="signed-in-as" data-state={state}>
          Signed in as <strong>{name}</strong>
        </p>
        <SignOutButton />
      </header>
      <h2 id="channel-heading">#{CHANNEL}</h2>
      <MessageList />
      <SendBox />
    </section>
  );
}

function SignOutButton() {
  const { signOut } = useAuthActions();
  return (
    <button
      type="button"
      className="secondary"
      data-testid="signout-button"
      onClick={() => void signOut()}
    >
      Sign out
    </button>
  );
}

function MessageList() {
  const messages = useQuery(listMessages, { channel: CHANNEL });
  const listRef = useRef<HTMLOListElement>(null);
  const newest = messages?.[messages.length - 1]?._id;

  useEffect(() => {
    const list = listRef.current;
    if (list !== null) {
      list.scrollTop = list.scrollHeight;
    }
  }, [newest]);

  if (messages === undefined) {
    return (
      <p className="status" role="status">
        Loading messages…
      </p>
    );
  }
  return (
    <ol
      ref={listRef}
      className="messages"
      aria-label={`Messages in #${CHANNEL}`}
      aria-live="polite"
      data-testid="message-list"
    >
      {messages.length === 0 && (
        <li className="empty">No messages yet. Say hello!</li>
      )}
      {messages.map((message) => (
        <MessageItem key={message._id} message={message} />
      ))}
    </ol>
  );
}

function MessageItem({ message }: { message: Message }) {
  const sent = new Date(message._creationTime);
  return (
    <li data-testid="message" data-id={message._id}>
      <span className="author" data-testid="message-author">
        {message.author}
      </span>{" "}
      <time dateTime={sent.toISOString()}>{sent.toLocaleTimeString()}</time>
      <p className="body" data-testid="message-body">
        {message.body}
      </p>
    </li>
  );
}

function SendBox() {
  const send = useMutation(sendMessage);
  const [body, setBody] = useState("");
  const [sending, setSending] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const submit = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    setSending(true);
    setError(null);
    try {
      await send({ body, channel: CHANNEL });
      setBody("");
    } catch (e) {
      setError(describeError(e));
    } finally {
      setSending(false);
    }
  };

  return (
    <form className="send" onSubmit={(event) => void submit(event)}>
      <label htmlFor="message-input" className="visually-hidden">
        Message
      </label>
      <input
        id="message-input"
        data-testid="message-input"
        value={body}
        onChange={(event) => setBody(event.target.value)}
        placeholder={`Message #${CHANNEL}`}
        autoComplete="off"
        aria-describedby={error === null ? undefined : "send-error"}
      />
      <button type="submit" data-testid="send-button" disabled={sending}>
        Send
      </button>
      {error !== null && (
        <p
          id="send-error"
          className="error"
          role="alert"
          data-testid="send-error"
        >
          Message not sent: {error}
          {error === "BadBody" && " (a message must be 1 to 2,000 characters)"}
        </p>
      )}
    </form>
  );
}

/** Shows a failed query (for example a function the backend does not have) instead of a blank page. */
class QueryErrorBoundary extends Component<
  { children: ReactNode },
  { error: Error | null }
> {
  state: { error: Error | null } = { error: null };

  static getDerivedStateFromError(error: Error) {
    return { error };
  }

  render() {
    if (this.state.error !== null) {
      return (
        <div className="card">
          <p className="error" role="alert" data-testid="query-error">
            Could not load the chat: {describeError(this.state.error)}
          </p>
          <div className="actions">
            <button
              type="button"
              onClick={() => this.setState({ error: null })}
            >
              Try again
            </button>
            <SignOutButton />
          </div>
        </div>
      );
    }
    return this.props.children;
  }
}
