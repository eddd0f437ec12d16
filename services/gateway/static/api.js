// REST calls against the gateway (same origin) and the login state they need.

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code;
  }
}

async function request(method, path, body, token) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const answer = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await answer.text();
  const parsed = text ? JSON.parse(text) : null;
  if (!answer.ok) throw new ApiError(answer.status, parsed);
  return parsed;
}

function newDeviceId() {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class Session {
  constructor() {
    this.deviceId = newDeviceId();
    this.auth = null; // the login answer: user_id, access_token, refresh_token, ws_url, ...
    this.expiresAt = 0;
    this.refreshing = null;
  }

  get userId() { return this.auth && this.auth.user_id; }
  get wsUrl() { return this.auth && this.auth.ws_url; }
  get token() { return this.auth && this.auth.access_token; }

  async register(username, password) {
    await request("POST", "/api/v1/auth/register", { username, password });
    return this.login(username, password);
  }

  async login(username, password) {
    this.keep(await request("POST", "/api/v1/auth/login",
      { username, password, device_id: this.deviceId }));
    return this.auth;
  }

  // One refresh at a time: a refresh token works once, and reusing it ends the session.
  refresh() {
    if (!this.refreshing) {
      this.refreshing = request("POST", "/api/v1/auth/refresh",
        { refresh_token: this.auth.refresh_token })
        .then((answer) => this.keep(answer))
        .finally(() => { this.refreshing = null; });
    }
    return this.refreshing;
  }

  keep(answer) {
    this.auth = answer;
    this.expiresAt = Date.now() + (answer.expires_in || 0) * 1000;
    return answer;
  }

  // Refresh first when the access token is (nearly) expired, e.g. before a reconnect.
  async fresh() {
    if (this.auth && Date.now() > this.expiresAt - 30000) await this.refresh();
  }

  async logout() {
    try { await this.call("POST", "/api/v1/auth/logout"); } finally { this.auth = null; }
  }

  // An authenticated call; an expired access token is refreshed once, then retried.
  async call(method, path, body) {
    try {
      return await request(method, path, body, this.token);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401 || !this.auth) throw error;
      await this.refresh();
      return request(method, path, body, this.token);
    }
  }
}
