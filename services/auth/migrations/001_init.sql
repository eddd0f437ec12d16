-- auth: accounts and device sessions (one row per issued refresh token).
CREATE TABLE IF NOT EXISTS users (
  user_id CHAR(26) NOT NULL,
  username VARCHAR(32) NOT NULL,
  -- Lower-cased username: makes the name unique in any letter case.
  username_lc VARCHAR(32) NOT NULL,
  display_name VARCHAR(64) NOT NULL,
  password_hash VARCHAR(255) NOT NULL,
  created_ts BIGINT NOT NULL,
  PRIMARY KEY (user_id),
  UNIQUE KEY uq_users_username_lc (username_lc)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- A login opens a family; each refresh revokes its row and adds a successor in the same
-- family. (user_id, device_id) is not unique: a new login on a device revokes the old row.
CREATE TABLE IF NOT EXISTS sessions (
  session_id CHAR(26) NOT NULL,
  user_id CHAR(26) NOT NULL,
  device_id VARCHAR(64) NOT NULL,
  family_id CHAR(26) NOT NULL,
  -- sha256 hex of the opaque refresh token; the token itself is never stored.
  refresh_hash CHAR(64) NOT NULL,
  created_ts BIGINT NOT NULL,
  last_seen_ts BIGINT NOT NULL,
  expires_ts BIGINT NOT NULL,
  revoked_ts BIGINT NULL,
  PRIMARY KEY (session_id),
  UNIQUE KEY uq_sessions_refresh_hash (refresh_hash),
  KEY ix_sessions_user_device (user_id, device_id),
  KEY ix_sessions_family (family_id),
  KEY ix_sessions_expires (expires_ts)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
