-- history owns every stored chat event and its own membership projection of the stream.
-- body is the event JSON exactly as it came from the stream (content and metadata come
-- back byte-for-byte); the other columns are copies for indexing and lookups.
CREATE TABLE IF NOT EXISTS history_messages (
  chat_id VARCHAR(64) NOT NULL,
  seq BIGINT NOT NULL,
  event VARCHAR(24) NOT NULL,
  message_id VARCHAR(128) NULL,
  sender_id VARCHAR(128) NULL,
  sender_device_id VARCHAR(128) NULL,
  client_msg_id VARCHAR(128) NULL,
  content_type VARCHAR(64) NULL,
  content_version INT NULL,
  body MEDIUMTEXT NOT NULL,
  ts BIGINT NOT NULL,
  PRIMARY KEY (chat_id, seq),
  INDEX history_messages_sender (sender_id, ts),
  UNIQUE INDEX history_messages_message_id (message_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One row per (chat, user) history has seen in a chat_updated event. is_member says whether
-- the user belongs to the chat as of changed_seq; an older change never overrides a newer
-- one, so redelivered or out-of-order events cannot undo a later join or leave.
CREATE TABLE IF NOT EXISTS history_members (
  chat_id VARCHAR(64) NOT NULL,
  user_id VARCHAR(128) NOT NULL,
  is_member TINYINT(1) NOT NULL,
  changed_seq BIGINT NOT NULL,
  PRIMARY KEY (chat_id, user_id),
  INDEX history_members_user (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
