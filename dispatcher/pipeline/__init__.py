"""The way of one event: admission, ingest (recipients, delivery rows), routing (preferences, digests, quiet
hours, critical types), delivery."""
