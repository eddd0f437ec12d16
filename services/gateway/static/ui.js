// Building the page. User content only ever reaches the page as text (textContent), never as HTML.

export function $(id) { return document.getElementById(id); }

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

export function shortId(id) { return id && id.length > 10 ? `${id.slice(0, 8)}…` : id; }

export function chatLabel(chat, me) {
  if (chat.name) return chat.name;
  const others = chat.members.filter((m) => m.user_id !== me).map((m) => shortId(m.user_id));
  if (chat.type === "direct") return others.length ? `Direct with ${others[0]}` : "Direct chat";
  return others.length ? `Group with ${others.join(", ")}` : "Group";
}

export function renderChatList(list, chats, openId, me, onOpen) {
  list.replaceChildren(...chats.map((chat) => {
    const unread = chat.chatId === openId ? 0 : chat.unread; // the open chat is being read
    const badge = unread ? el("span", { class: "badge", text: String(unread),
      "aria-label": `${unread} unread` }) : null;
    const button = el("button", { type: "button", "data-chat-id": chat.chatId,
      "aria-current": chat.chatId === openId ? "true" : null,
      onclick: () => onOpen(chat.chatId) }, el("span", { text: chatLabel(chat, me) }), badge);
    return el("li", {}, button);
  }));
}

export function renderMembers(list, members, presence, me) {
  list.replaceChildren(...members.map((member) => {
    const status = presence.get(member.user_id) || "unknown";
    const who = member.user_id === me ? "you" : member.user_id;
    return el("li", { "data-user-id": member.user_id, "data-presence": status },
      el("span", { class: `dot ${status}`, "aria-hidden": "true" }),
      el("span", { text: `${who} (${status})` }));
  }));
}

const TICKS = { pending: "🕓", sent: "✓", delivered: "✓✓", read: "✓✓" };

function contentText(event) {
  if (event.content === null || event.content === undefined) return "(message removed)";
  return typeof event.content === "string" ? event.content : JSON.stringify(event.content);
}

function time(ts) {
  return ts ? new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
}

function messageNode(key) {
  return el("li", { "data-key": key },
    el("span", { class: "who" }), el("span", { class: "text" }),
    el("span", { class: "meta" }), el("span", { class: "tick" }));
}

// One message (or system line) brought up to date; returns false for events not shown.
function fill(node, event, me, status) {
  if (event.type === "chat_updated") {
    node.className = "system";
    node.querySelector(".text").textContent = `chat ${String(event.kind).replace("_", " ")}`;
    return true;
  }
  if (event.type !== "message" && event.type !== "new_message") return false;
  const own = event.sender_id === me;
  node.className = own ? "own" : "other";
  if (event.seq !== undefined) node.dataset.seq = String(event.seq);
  node.querySelector(".who").textContent = own ? "you" : shortId(event.sender_id);
  node.querySelector(".text").textContent = contentText(event) + (event.edited ? " (edited)" : "");
  node.querySelector(".meta").textContent = time(event.ts);
  const tick = node.querySelector(".tick");
  tick.replaceChildren();
  if (!own) return true;
  node.dataset.status = status;
  tick.title = status;
  tick.append(TICKS[status], el("span", { class: "visually-hidden", text: ` ${status}` }));
  return true;
}

// Keyed update of the message log: existing nodes are kept, new ones inserted in order.
export function renderMessages(log, items, me, statusOf) {
  const existing = new Map([...log.children].map((node) => [node.dataset.key, node]));
  const wanted = [];
  for (const { key, event } of items) {
    const node = existing.get(key) || messageNode(key);
    if (fill(node, event, me, statusOf(event))) wanted.push(node);
  }
  const keep = new Set(wanted);
  for (const node of existing.values()) if (!keep.has(node)) node.remove();
  wanted.forEach((node, i) => { if (log.children[i] !== node) log.insertBefore(node, log.children[i] || null); });
  log.scrollTop = log.scrollHeight;
}
