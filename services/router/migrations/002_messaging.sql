-- Custom content types and the highest seq confirmed as stored in the stream.

-- One row per (type name, version); built-ins (text, image, ...) live in proto/ instead.
CREATE TABLE IF NOT EXISTS router_message_types (
  name VARCHAR(64) NOT NULL,
  version INT NOT NULL,
  registrant_id VARCHAR(128) NOT NULL,
  schema_json MEDIUMTEXT NOT NULL,
  created_ts BIGINT NOT NULL,
  PRIMARY KEY (name, version)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Highest seq whose event JetStream acknowledged (flushed every ~100 ms). After Redis
-- lost a counter, the numbers in (confirmed_seq, seq_hwm] are recorded as void events.
ALTER TABLE router_conversations ADD COLUMN confirmed_seq BIGINT NOT NULL DEFAULT 0;
