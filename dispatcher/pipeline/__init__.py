"""The way of one event: admission, ingest (recipients, preferences, delivery rows), delivery."""
