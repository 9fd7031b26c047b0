"""What every layer uses: errors, the clock, settings, the catalog, events, times, rendering, logs, authority."""
