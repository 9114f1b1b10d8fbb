// The reducer over event streams recorded from a real LabServer (record_streams.py): what the
// built-in renderer would show after each stream. Run with `node --test test/` (make test does).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { initialState, reduce } from "../src/reducer.js";

const recorded = (name) => JSON.parse(readFileSync(new URL(`./streams/${name}.json`, import.meta.url)));
const play = (state, events) => events.reduce((s, event) => reduce(s, { type: "event", event }), state);
const textOf = (item) => item.content.map((p) => p.text).join("");

test("a streamed reply: thread, user message, and deltas adding up to the saved text", () => {
  const { events } = recorded("reply");
  const state = play(initialState, events[0]);
  const created = events[0][0].thread;
  assert.equal(state.threadId, created.id);
  assert.equal(state.thread.title, "hello there");
  assert.deepEqual(state.threads.map((t) => t.id), [created.id]);
  assert.deepEqual(state.items.map((i) => i.type), ["user_message", "assistant_message"]);
  const saved = events[0].findLast((e) => e.type === "thread.item.done").item;
  assert.equal(textOf(state.items[1]), textOf(saved));
  assert.equal(state.allowCancel, true);
});

test("deltas alone, before the done event, already show the whole text", () => {
  const { events } = recorded("reply");
  const stream = events[0].filter((e) => !(e.type === "thread.item.done" && e.item.type === "assistant_message"));
  const state = play(initialState, stream);
  const saved = events[0].findLast((e) => e.type === "thread.item.done").item;
  assert.equal(textOf(state.items[1]), textOf(saved));
});

test("a tool call shows as a workflow whose task is updated in place, then the reply", () => {
  const { events } = recorded("tool");
  const midway = events[0].findIndex((e) => e.type === "thread.item.updated" && e.update.type === "workflow.task.updated");
  const before = play(initialState, events[0].slice(0, midway));
  assert.equal(before.items[1].workflow.tasks[0].title, "Calling `get_weather`");
  const state = play(initialState, events[0]);
  assert.deepEqual(state.items.map((i) => i.type), ["user_message", "workflow", "assistant_message"]);
  const task = state.items[1].workflow.tasks[0];
  assert.equal(task.status_indicator, "complete");
  assert.match(task.content, /21C and sunny in Oslo/);
});

test("progress, notices, widget deltas, component updates and a structured input, then its answer", () => {
  const { events } = recorded("parts");
  const [action, answer] = events;
  const upTo = (type) => play(initialState, action.slice(0, action.findIndex((e) => e.type === type || e.update?.type === type) + 1));
  assert.equal(upTo("progress_update").progress.text, "Looking things up…");
  assert.equal(upTo("thread.item.added").progress, null); // an item replaces the status line
  assert.deepEqual(upTo("notice").notices, [{ level: "info", title: "Note", message: "Prices are **estimates**." }]);
  const streamed = upTo("widget.streaming_text.value_delta").items[0].widget.children[1];
  assert.equal(streamed.value, "Packed");
  const updated = upTo("widget.component.updated").items[0].widget.children[0];
  assert.equal(updated.value, "Order 42 (shipped)");
  const asked = play(initialState, action);
  const question = asked.items.find((i) => i.type === "structured_input");
  assert.equal(question.status, "pending");
  assert.deepEqual(question.inputs.map((q) => q.type), ["multiple_choice", "freeform"]);
  assert.equal("effects" in asked, false); // effects go to handlers, not into state

  const answered = play(asked, answer);
  const replaced = answered.items.filter((i) => i.type === "structured_input");
  assert.equal(replaced.length, 1); // replaced in place, not added twice
  assert.equal(replaced[0].status, "answered");
  assert.deepEqual(replaced[0].inputs.map((q) => q.answer.values), [["M"], ["gift wrap"]]);
  assert.match(textOf(answered.items.at(-1)), /Which size\?: M/);
});

test("a retry drops what followed the user message (the server sends no removals) and streams anew", () => {
  const reply = recorded("reply");
  const shown = play(initialState, reply.events[0]);
  const userId = reply.events[0].find((e) => e.type === "thread.item.done").item.id;
  const cut = reduce(shown, { type: "retry", itemId: userId });
  assert.deepEqual(cut.items.map((i) => i.id), [userId]);
  const { events } = recorded("retry");
  const state = play(cut, events[0]);
  assert.deepEqual(state.items.map((i) => i.type), ["user_message", "assistant_message"]);
  assert.notEqual(state.items[1].id, shown.items[1].id);
});

test("an error event, then a new stream clears it", () => {
  const failed = play(initialState, [{ type: "error", code: "stream.error", message: "The model is unavailable.", allow_retry: true }]);
  assert.deepEqual(failed.error, { message: "The model is unavailable.", allowRetry: true });
  assert.equal(reduce(failed, { type: "stream.start" }).error, null);
});

test("older pages are prepended oldest first and hidden items are never shown", () => {
  const { events } = recorded("reply");
  const [user, assistant] = play(initialState, events[0]).items;
  const page = (data, more) => ({ data, has_more: more, after: more ? data.at(-1).id : null });
  const hidden = { id: "h1", type: "sdk_hidden_context", content: "secret" };
  let state = reduce(initialState, { type: "thread.loaded", thread: events[0][0].thread, page: page([assistant, hidden], true) });
  assert.deepEqual(state.items.map((i) => i.id), [assistant.id]);
  assert.equal(state.hasOlder, true);
  state = reduce(state, { type: "items.older", page: page([user], false) });
  assert.deepEqual(state.items.map((i) => i.id), [user.id, assistant.id]);
  assert.equal(state.hasOlder, false);
});

test("Thinking lasts from the send to the first text, and Stop marks the reply being written", () => {
  const { events } = recorded("reply");
  let state = reduce(initialState, { type: "stream.start" });
  assert.equal(state.awaiting, true);
  const firstDelta = events[0].findIndex((e) => e.update?.type === "assistant_message.content_part.text_delta");
  state = play(state, events[0].slice(0, firstDelta));
  assert.equal(state.awaiting, true); // the user message and an empty reply: still thinking
  state = play(state, events[0].slice(firstDelta, firstDelta + 1));
  assert.equal(state.awaiting, false);
  state = reduce(state, { type: "stream.stopping" });
  assert.deepEqual(state.stopped, [state.items[1].id]);
  assert.equal(state.stopping, true);
  state = reduce(state, { type: "stream.end" });
  assert.equal(state.stopping, false);
  assert.deepEqual(state.stopped, [state.items[1].id]); // the mark stays
});
