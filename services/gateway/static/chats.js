// What the page knows about chats: events deduplicated by (chat_id, seq), the device's
// ack and read positions, the receipts other members sent, and messages not yet acked.

const EVENT_TYPES = new Set(["new_message", "message_updated", "chat_updated"]);

export function isChatEvent(frame) {
  return EVENT_TYPES.has(frame.type) && typeof frame.seq === "number";
}

function newChat(chatId) {
  return {
    chatId, type: "", name: null, unread: 0, members: [],
    events: new Map(), // seq -> history item or frame
    acked: 0, // highest seq acked by this device (events reach a device in seq order)
    readSent: 0, // highest seq this user has been said to have read
    delivered: 0, read: 0, // highest seq another member's device holds / has read
  };
}

export class Chats {
  constructor(me) {
    this.me = me;
    this.byId = new Map();
    this.pending = new Map(); // client message id -> {chat_id, content, ts}
  }

  get(chatId) {
    if (!this.byId.has(chatId)) this.byId.set(chatId, newChat(chatId));
    return this.byId.get(chatId);
  }

  known(chatId) { return this.byId.has(chatId) && this.byId.get(chatId).type !== ""; }

  setList(list) {
    for (const item of list) Object.assign(this.get(item.chat_id), {
      type: item.type, name: item.name, unread: item.unread || 0,
    });
    return this.ordered(list.map((item) => item.chat_id));
  }

  ordered(ids) { return ids.map((id) => this.get(id)); }

  setMembers(chat) {
    Object.assign(this.get(chat.chat_id), { type: chat.type, name: chat.name, members: chat.members });
  }

  // Adds a history item or a live frame; false when (chat_id, seq) was already there.
  add(event) {
    const chat = this.get(event.chat_id);
    if (chat.events.has(event.seq)) return false;
    chat.events.set(event.seq, event);
    if (event.type === "message_updated") this.applyUpdate(chat, event);
    return true;
  }

  applyUpdate(chat, update) {
    const target = chat.events.get(update.target_seq);
    if (!target) return;
    target.content = update.kind === "edit" ? update.content : null;
    target.edited = update.kind === "edit";
  }

  // The cumulative ack to send for a live event, or null when it is nothing new.
  ackFor(event) {
    const chat = this.get(event.chat_id);
    if (event.seq <= chat.acked) return null;
    chat.acked = event.seq;
    return { type: "ack", chat_id: event.chat_id, seq: event.seq };
  }

  // The read frame to send for an open, visible chat, or null when nothing new was read.
  readFor(chatId) {
    const last = this.lastSeq(chatId);
    return last > this.get(chatId).readSent ? { type: "read", chat_id: chatId, seq: last } : null;
  }

  noteRead(frame) {
    Object.assign(this.get(frame.chat_id), { readSent: frame.seq, unread: 0 });
  }

  lastSeq(chatId) {
    const seqs = [...this.get(chatId).events.keys()];
    return seqs.length ? Math.max(...seqs) : 0;
  }

  receipt(frame) {
    if (frame.user_id === this.me) return;
    const chat = this.get(frame.chat_id);
    if (frame.status === "read") chat.read = Math.max(chat.read, frame.seq);
    chat.delivered = Math.max(chat.delivered, frame.seq);
  }

  // The tick of one of our own messages: pending, sent, delivered or read.
  statusOf(chatId, seq) {
    if (seq === undefined) return "pending";
    const chat = this.get(chatId);
    if (chat.read >= seq) return "read";
    return chat.delivered >= seq ? "delivered" : "sent";
  }

  sendFrame(chatId, text) {
    const id = "c-" + crypto.randomUUID();
    this.pending.set(id, { chat_id: chatId, content: text, ts: Date.now() });
    return { type: "send_message", id, chat_id: chatId, content_type: "text", content: text };
  }

  // message_ack: the message is durable; it becomes an ordinary event of the chat.
  acked(frame) {
    const sent = this.pending.get(frame.id);
    if (!sent) return;
    this.pending.delete(frame.id);
    this.add({ type: "message", chat_id: frame.chat_id, seq: frame.seq, ts: frame.ts,
      message_id: frame.message_id, sender_id: this.me, content_type: "text",
      content: sent.content, client_msg_id: frame.id });
  }

  // Messages of the chat in display order: stored events by seq, then pending ones.
  timeline(chatId) {
    const chat = this.get(chatId);
    const stored = [...chat.events.values()].sort((a, b) => a.seq - b.seq)
      .map((event) => ({ key: `s${event.seq}`, event }));
    const pending = [...this.pending.entries()].filter(([, p]) => p.chat_id === chatId)
      .map(([id, p]) => ({ key: `p${id}`, event: { type: "message", chat_id: chatId,
        sender_id: this.me, content: p.content, ts: p.ts } }));
    return stored.concat(pending);
  }
}
