-- Current state of messages (edit / recall / delete), text search, and retention.
-- state: active | edited | recalled | deleted. current_body: the message event JSON with its
-- content replaced (edit) or nulled (recall, delete); NULL while active. updated_seq: seq of
-- the message_updated event that set the state (an older update never overrides a newer one).
-- text_content: the content of "text" messages, for FULLTEXT search (case-insensitive
-- collation); NULL for other types and once recalled or deleted.
ALTER TABLE history_messages
  ADD COLUMN state VARCHAR(12) NOT NULL DEFAULT 'active',
  ADD COLUMN current_body MEDIUMTEXT NULL,
  ADD COLUMN updated_seq BIGINT NULL,
  ADD COLUMN text_content TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NULL;

CREATE FULLTEXT INDEX history_messages_text ON history_messages (text_content);

-- Per chat: the lowest seq retention kept (paging below it answers an empty page) and the
-- newest seq stored (the recent-event cache's upper end).
CREATE TABLE IF NOT EXISTS history_chats (
  chat_id VARCHAR(64) NOT NULL,
  min_seq BIGINT NOT NULL DEFAULT 1,
  max_seq BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (chat_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Chats that existed before this migration.
INSERT IGNORE INTO history_chats (chat_id, min_seq, max_seq)
  SELECT chat_id, 1, MAX(seq) FROM history_messages GROUP BY chat_id
