"""auth: accounts, device sessions, access and refresh tokens (NATS ``im.auth.*``)."""
