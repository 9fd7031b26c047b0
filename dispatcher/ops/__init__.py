"""Operations tools: dead letters, the Procfile supervisor, the event JSON Schema."""
