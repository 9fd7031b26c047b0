"""Control commands (`tidings.*`): users, preferences, topics, cancel, webhook endpoints."""
