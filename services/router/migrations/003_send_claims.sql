-- Durable send de-duplication: one row per (sender, client message id) for the dedup
-- window. Redis holds the same claims as a fast cache; this table is the truth, so a
-- resend is recognised while Redis is down or after it lost its keys.
-- message_id is the claimant's token (the id its event is published under): a stale
-- pending claim is taken over by compare-and-set on it. acked = 0: a send in progress.
CREATE TABLE IF NOT EXISTS router_send_claims (
  sender_id VARCHAR(64) NOT NULL,
  client_msg_id VARCHAR(128) NOT NULL,
  chat_id VARCHAR(64) NOT NULL,
  message_id CHAR(26) NOT NULL,
  seq BIGINT NULL,
  ts BIGINT NULL,
  acked TINYINT NOT NULL DEFAULT 0,
  created_ts BIGINT NOT NULL,
  PRIMARY KEY (sender_id, client_msg_id),
  KEY ix_created (created_ts)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
