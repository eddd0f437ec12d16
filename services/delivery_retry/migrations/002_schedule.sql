-- delivery-retry: what the redelivery scheduler, receipts and the status API need.

-- One row per stored event (not per device): where a message sits and who sent it, for
-- receipts ("whose message did this ack cover"), delivery_failed, the status API
-- (message_id -> chat, seq) and for not waiting on a device to ack its own messages.
CREATE TABLE IF NOT EXISTS dlv_events (
  chat_id          VARCHAR(64)  NOT NULL,
  seq              BIGINT       NOT NULL,
  kind             VARCHAR(16)  NOT NULL,
  message_id       VARCHAR(128) NULL,
  sender_id        VARCHAR(128) NULL,
  sender_device_id VARCHAR(128) NULL,
  ts               BIGINT       NOT NULL,
  PRIMARY KEY (chat_id, seq),
  UNIQUE KEY uq_dlv_events_message (message_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One pending look per chat with new events: at due_ts the scheduler finds the online
-- member devices whose cursor is still below check_seq and gives each a dlv_retries row.
-- next_seq is the newest seq seen since; it becomes the next check (one backoff step
-- later), so a busy chat costs one row and one look per step, not one per message.
CREATE TABLE IF NOT EXISTS dlv_checks (
  chat_id   VARCHAR(64) NOT NULL,
  check_seq BIGINT      NOT NULL,
  next_seq  BIGINT      NOT NULL,
  due_ts    BIGINT      NOT NULL,
  PRIMARY KEY (chat_id),
  INDEX idx_dlv_checks_due (due_ts)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
