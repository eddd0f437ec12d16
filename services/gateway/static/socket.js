// The WebSocket to the URL the login answer named: reconnects with backoff, resends
// unacknowledged messages (the server dedups them by client id), refreshes on 4402.

const CLOSE_SESSION_ENDED = 4401;
const CLOSE_TOKEN_EXPIRED = 4402;
const MAX_DELAY_MS = 15000;

export class Socket {
  constructor(session, { onFrame, onState, onSessionEnded }) {
    this.session = session;
    this.onFrame = onFrame;
    this.onState = onState;
    this.onSessionEnded = onSessionEnded;
    this.outbox = new Map(); // client message id -> send_message frame, until message_ack
    this.ws = null;
    this.delay = 500;
    this.stopped = false;
    this.timer = null;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, "bye");
  }

  async connect() {
    try { await this.session.fresh(); } catch (error) {
      if (error.status === 401) { this.onSessionEnded(); return; }
    }
    if (this.stopped) return;
    const url = new URL(this.session.wsUrl);
    url.searchParams.set("token", this.session.token);
    this.onState("connecting");
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.addEventListener("open", () => this.opened(ws));
    ws.addEventListener("message", (event) => this.received(event.data));
    ws.addEventListener("close", (event) => this.closed(ws, event.code));
  }

  opened(ws) {
    ws.wasOpen = true;
    this.delay = 500;
    this.onState("online");
    for (const frame of this.outbox.values()) this.rawSend(frame);
  }

  received(text) {
    let frame;
    try { frame = JSON.parse(text); } catch { return; }
    if (frame.type === "message_ack") this.outbox.delete(frame.id);
    this.onFrame(frame);
  }

  closed(ws, code) {
    if (ws !== this.ws || this.stopped) return;
    this.onState("offline");
    if (code === CLOSE_SESSION_ENDED) { this.onSessionEnded(); return; }
    // A rejected handshake (no socket: maybe a stale token) or 4402: refresh before retrying.
    if (code === CLOSE_TOKEN_EXPIRED || !ws.wasOpen) this.session.expiresAt = 0;
    const wait = this.delay * (0.5 + Math.random() / 2);
    this.delay = Math.min(this.delay * 2, MAX_DELAY_MS);
    this.timer = setTimeout(() => this.connect(), wait);
  }

  rawSend(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  // Signals (typing, ack, read) are dropped while offline; messages wait in the outbox.
  // True when the frame went out now.
  send(frame) {
    if (frame.type === "send_message") this.outbox.set(frame.id, frame);
    return this.rawSend(frame);
  }

  forget(clientId) { this.outbox.delete(clientId); }
}
