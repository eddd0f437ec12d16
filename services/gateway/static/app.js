// The demo page: log in, list and open chats, send and receive, typing, presence, ticks.
import { ApiError, Session } from "./api.js";
import { Chats, isChatEvent } from "./chats.js";
import { Socket } from "./socket.js";
import { $, chatLabel, renderChatList, renderMembers, renderMessages, shortId } from "./ui.js";

const TYPING_IDLE_MS = 3000; // stop_typing after this long without a keystroke
const TYPING_RESEND_MS = 4000; // start_typing again while the user keeps typing
const TYPING_SHOW_MS = 6000; // hide someone's indicator when no update came

const state = {
  session: new Session(), socket: null, chats: null, openId: null, order: [],
  presence: new Map(), typing: new Map(), typingChat: null, typingAt: 0, typingTimer: null,
};
const me = () => state.session.userId;
const path = (...parts) => "/api/v1/" + parts.map(encodeURIComponent).join("/");

function describe(error) {
  const known = { 401: "Wrong username or password.", 409: "That username is taken.",
    429: "Too many attempts; wait a moment." };
  return (error instanceof ApiError && known[error.status]) || error.message || String(error);
}

function show(signedIn) {
  for (const id of ["main", "me", "logout"]) $(id).hidden = !signedIn;
  $("auth").hidden = signedIn;
}

// ---- signing in and out ------------------------------------------------------------------
async function onAuth(event) {
  event.preventDefault();
  const register = event.submitter && event.submitter.value === "register";
  const [username, password] = [$("username").value.trim(), $("password").value];
  $("auth-error").textContent = "";
  try {
    await (register ? state.session.register(username, password)
      : state.session.login(username, password));
  } catch (error) { $("auth-error").textContent = describe(error); return; }
  $("password").value = "";
  await start();
}

async function start() {
  state.chats = new Chats(me());
  $("my-id").textContent = me();
  show(true);
  state.socket = new Socket(state.session, { onFrame, onState, onSessionEnded: signedOut });
  state.socket.start();
  await loadChats();
}

function signedOut() {
  if (state.socket) state.socket.stop();
  Object.assign(state, { socket: null, chats: null, openId: null, order: [] });
  show(false);
  onState("signed out");
}

async function onLogout() {
  try { await state.session.logout(); } finally { signedOut(); }
}

function onState(text) {
  $("conn").textContent = text;
  document.body.dataset.conn = text;
  if (!state.chats) return;
  state.presence.set(me(), text === "online" ? "online" : "offline");
  redraw(state.openId);
  if (text === "online") markRead();
}

// ---- chats ------------------------------------------------------------------------------
async function loadMembers(chatId) {
  state.chats.setMembers(await state.session.call("GET", path("chats", chatId)));
}

async function loadChats() {
  const { chats } = await state.session.call("GET", path("chats"));
  state.order = chats.map((chat) => chat.chat_id);
  state.chats.setList(chats);
  const missing = chats.filter((chat) => !state.chats.get(chat.chat_id).members.length);
  await Promise.all(missing.map((chat) => loadMembers(chat.chat_id)));
  drawChats();
}

async function loadPresence(chatId) {
  const others = state.chats.get(chatId).members.filter((m) => m.user_id !== me());
  await Promise.all(others.map(async ({ user_id }) => {
    try {
      const answer = await state.session.call("GET", path("users", user_id, "presence"));
      state.presence.set(user_id, answer.status);
    } catch { state.presence.delete(user_id); } // presence can be unavailable (no Redis)
  }));
}

async function openChat(chatId) {
  state.openId = chatId;
  stopTyping();
  await loadMembers(chatId);
  const page = await newestPage(chatId);
  page.events.forEach((event) => state.chats.add(event));
  await loadPresence(chatId);
  if (state.openId !== chatId) return; // another chat was opened meanwhile
  $("composer").hidden = false;
  drawChats();
  drawChat();
  markRead();
}

// A chat created a moment ago may not have reached history yet, which answers "unknown
// chat" (4001) until it has; the router just listed the chat, so wait for history.
const UNKNOWN_CHAT = 4001;
const HISTORY_CATCH_UP_TRIES = 40;

async function newestPage(chatId) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await state.session.call("GET", path("chats", chatId, "messages") + "?limit=50");
    } catch (error) {
      if (error.code !== UNKNOWN_CHAT || attempt >= HISTORY_CATCH_UP_TRIES) throw error;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}

async function onNewChat(event) {
  event.preventDefault();
  const type = $("chat-type").value;
  const body = { type, members: $("chat-members").value.split(/[\s,]+/).filter(Boolean) };
  if (type === "group" && $("chat-name").value.trim()) body.name = $("chat-name").value.trim();
  $("chat-error").textContent = "";
  try {
    const chat = await state.session.call("POST", path("chats"), body);
    event.target.reset();
    await loadChats();
    await openChat(chat.chat_id);
  } catch (error) { $("chat-error").textContent = describe(error); }
}

// ---- drawing ----------------------------------------------------------------------------
function drawChats() {
  renderChatList($("chat-list"), state.chats.ordered(state.order), state.openId, me(), openChat);
}

function drawChat() {
  const chat = state.chats.get(state.openId);
  $("chat-title").textContent = chatLabel(chat, me());
  renderMembers($("members"), chat.members, state.presence, me());
  const statusOf = (event) => state.chats.statusOf(chat.chatId, event.seq);
  renderMessages($("messages"), state.chats.timeline(chat.chatId), me(), statusOf);
  drawTyping();
}

function drawTyping() {
  const names = [...(state.typing.get(state.openId) || new Map()).keys()].map(shortId);
  $("typing").textContent = names.length
    ? `${names.join(", ")} ${names.length > 1 ? "are" : "is"} typing…` : "";
}

function redraw(chatId) { if (chatId && chatId === state.openId) drawChat(); }

// Reading: the open chat counts as read while the page is visible.
function markRead() {
  if (!state.openId || !state.socket || document.visibilityState !== "visible") return;
  const frame = state.chats.readFor(state.openId);
  if (frame && state.socket.send(frame)) state.chats.noteRead(frame);
}

// ---- frames from the server ---------------------------------------------------------------
function chatEvent(frame) {
  const fresh = state.chats.add(frame);
  const ack = state.chats.ackFor(frame);
  if (ack) state.socket.send(ack);
  if (!fresh) return;
  if (frame.type === "chat_updated" || !state.chats.known(frame.chat_id)) loadChats();
  if (frame.type === "new_message") newMessage(frame);
  if (frame.chat_id === state.openId) { drawChat(); markRead(); }
  drawChats();
}

function newMessage(frame) {
  setTyping(frame.chat_id, frame.sender_id, false);
  state.order = [frame.chat_id, ...state.order.filter((id) => id !== frame.chat_id)];
  if (frame.chat_id !== state.openId && frame.sender_id !== me()) {
    state.chats.get(frame.chat_id).unread += 1;
  }
}

function setTyping(chatId, userId, typing) {
  if (userId === me()) return;
  if (!state.typing.has(chatId)) state.typing.set(chatId, new Map());
  const users = state.typing.get(chatId);
  clearTimeout(users.get(userId));
  users.delete(userId);
  if (typing) users.set(userId, setTimeout(() => setTyping(chatId, userId, false), TYPING_SHOW_MS));
  if (chatId === state.openId) drawTyping();
}

function sendFailed(frame) {
  if (frame.id && state.chats.pending.has(frame.id) && ![5003, 4029].includes(frame.code)) {
    state.chats.pending.delete(frame.id);
    state.socket.forget(frame.id);
    redraw(state.openId);
  }
  $("send-error").textContent = `${frame.message} (${frame.code})`;
}

const handlers = {
  message_ack: (frame) => { state.chats.acked(frame); redraw(frame.chat_id); },
  receipt: (frame) => { state.chats.receipt(frame); redraw(frame.chat_id); },
  typing_indicator: (frame) => setTyping(frame.chat_id, frame.user_id, frame.typing),
  presence_update: (frame) => { state.presence.set(frame.user_id, frame.status); redraw(state.openId); },
  sync_required: (frame) => { if (frame.chat_id === state.openId) openChat(frame.chat_id); },
  error: sendFailed,
};

function onFrame(frame) {
  if (isChatEvent(frame)) chatEvent(frame);
  else if (handlers[frame.type]) handlers[frame.type](frame);
}

// ---- composing ----------------------------------------------------------------------------
function onSend(event) {
  event.preventDefault();
  const input = $("message-input");
  if (!input.value.trim() || !state.openId) return;
  state.socket.send(state.chats.sendFrame(state.openId, input.value));
  input.value = "";
  $("send-error").textContent = "";
  stopTyping();
  drawChat();
}

function onInput() {
  const now = Date.now();
  if (state.typingChat !== state.openId) stopTyping();
  if (state.typingChat === null || now - state.typingAt > TYPING_RESEND_MS) {
    state.socket.send({ type: "start_typing", chat_id: state.openId });
    Object.assign(state, { typingChat: state.openId, typingAt: now });
  }
  clearTimeout(state.typingTimer);
  state.typingTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
}

function stopTyping() {
  clearTimeout(state.typingTimer);
  if (state.typingChat && state.socket) {
    state.socket.send({ type: "stop_typing", chat_id: state.typingChat });
  }
  state.typingChat = null;
}

async function copyId() {
  try { await navigator.clipboard.writeText(me()); } catch {
    window.getSelection().selectAllChildren($("my-id")); // no clipboard: select it instead
  }
}

$("auth-form").addEventListener("submit", onAuth);
$("new-chat").addEventListener("submit", onNewChat);
$("composer").addEventListener("submit", onSend);
$("message-input").addEventListener("input", onInput);
$("logout").addEventListener("click", onLogout);
$("copy-id").addEventListener("click", copyId);
document.addEventListener("visibilitychange", markRead);
