"""history: stores every chat event from the stream in MySQL and serves it back in pages."""
