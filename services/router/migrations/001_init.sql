-- router owns conversations, their members (with read positions) and seq high-water marks.
CREATE TABLE IF NOT EXISTS router_conversations (
  chat_id CHAR(26) NOT NULL PRIMARY KEY,
  type VARCHAR(8) NOT NULL,
  name VARCHAR(128) NULL,
  pair_key VARCHAR(140) NULL,
  created_by VARCHAR(64) NOT NULL,
  created_ts BIGINT NOT NULL,
  -- Highest seq ever reserved: numbers are handed out of Redis only below it, so after
  -- a Redis flush numbering resumes above everything that could have been issued.
  seq_hwm BIGINT NOT NULL DEFAULT 0,
  UNIQUE KEY uq_pair (pair_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS router_members (
  chat_id CHAR(26) NOT NULL,
  user_id VARCHAR(64) NOT NULL,
  role VARCHAR(8) NOT NULL,
  joined_ts BIGINT NOT NULL,
  last_read_seq BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (chat_id, user_id),
  KEY ix_user (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
