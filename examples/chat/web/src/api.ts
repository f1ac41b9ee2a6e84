// References to the example's functions by name.
//
// The chat example's functions are written in Rust, so there is no generated
// `convex/_generated/api`; these typed references give the React hooks the same checking.
import { makeFunctionReference } from "convex/server";

/** The channel the page shows and posts to. */
export const CHANNEL = "general";

/** A stored chat message, as `messages:list` returns it. */
export interface Message {
  _id: string;
  _creationTime: number;
  channel: string;
  author: string;
  body: string;
}

/** The signed-in user, as `users:viewer` returns it. */
export interface Viewer {
  _id: string;
  name?: string;
  email?: string;
  image?: string;
}

/** `messages:list`: the newest 100 messages of a channel, oldest first. */
export const listMessages = makeFunctionReference<
  "query",
  { channel?: string },
  Message[]
>("messages:list");

/** `messages:send`: posts a message; fails with `ConvexError({code: "BadBody"})` on an empty or too long body. */
export const sendMessage = makeFunctionReference<
  "mutation",
  { body: string; channel?: string },
  string
>("messages:send");

/** `users:viewer`: the signed-in user, or `null`. */
export const viewer = makeFunctionReference<
  "query",
  Record<string, never>,
  Viewer | null
>("users:viewer");
