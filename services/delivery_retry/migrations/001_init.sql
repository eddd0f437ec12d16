-- delivery-retry: per-(device, chat) delivery state. Never a row per message per device.
-- Portable between MariaDB >= 10.11 and MySQL >= 8.0 (database collation utf8mb4_bin).

-- Highest seq seen on the stream per chat (GREATEST on every event, so redelivery and
-- reordering cannot move it backwards).
CREATE TABLE IF NOT EXISTS dlv_chats (
  chat_id    VARCHAR(64)  NOT NULL,
  last_seq   BIGINT       NOT NULL,
  updated_ts BIGINT       NOT NULL,
  PRIMARY KEY (chat_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Chat membership as projected from chat_updated events. Each row is a last-writer-wins
-- register keyed by the seq of the event that last changed it: removed members stay as
-- rows with active = 0, so an older event (redelivered late) can never resurrect or
-- remove a member that a newer event decided about.
CREATE TABLE IF NOT EXISTS dlv_members (
  chat_id    VARCHAR(64)  NOT NULL,
  user_id    VARCHAR(128) NOT NULL,
  active     TINYINT(1)   NOT NULL,
  member_seq BIGINT       NOT NULL,
  PRIMARY KEY (chat_id, user_id),
  INDEX idx_dlv_members_user (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The delivery cursor: the highest seq the device has acked in the chat (acks are
-- cumulative). Seq S is delivered to a device when its cursor >= S.
CREATE TABLE IF NOT EXISTS dlv_cursors (
  user_id    VARCHAR(128) NOT NULL,
  device_id  VARCHAR(128) NOT NULL,
  chat_id    VARCHAR(64)  NOT NULL,
  acked_seq  BIGINT       NOT NULL,
  updated_ts BIGINT       NOT NULL,
  PRIMARY KEY (user_id, device_id, chat_id),
  INDEX idx_dlv_cursors_chat (chat_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Redelivery schedule of online devices whose cursor stays behind: at most one row per
-- (device, chat) while a retry is pending, deleted once the cursor catches up. target_seq
-- is the chat's last_seq when the schedule started; attempts counts sends (the live push
-- is attempt 1); the scanner picks rows by next_attempt_ts.
CREATE TABLE IF NOT EXISTS dlv_retries (
  user_id         VARCHAR(128) NOT NULL,
  device_id       VARCHAR(128) NOT NULL,
  chat_id         VARCHAR(64)  NOT NULL,
  gateway_id      VARCHAR(64)  NOT NULL,
  target_seq      BIGINT       NOT NULL,
  attempts        INT          NOT NULL,
  next_attempt_ts BIGINT       NOT NULL,
  PRIMARY KEY (user_id, device_id, chat_id),
  INDEX idx_dlv_retries_due (next_attempt_ts)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Exceptions only: deliveries given up after the last attempt while the device was online
-- (status "failed"; the events still arrive on the device's next connect/sync).
CREATE TABLE IF NOT EXISTS dlv_failures (
  chat_id   VARCHAR(64)  NOT NULL,
  seq       BIGINT       NOT NULL,
  user_id   VARCHAR(128) NOT NULL,
  device_id VARCHAR(128) NOT NULL,
  attempts  INT          NOT NULL,
  failed_ts BIGINT       NOT NULL,
  PRIMARY KEY (chat_id, seq, user_id, device_id),
  INDEX idx_dlv_failures_device (user_id, device_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
