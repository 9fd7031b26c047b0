"""Tidings: a notification daemon. Sub-packages are layers, lowest first; a layer imports only those below it.

- ``core``: errors, the clock, settings, the catalog, CloudEvents, times, rendering, logs, authority
- ``storage``: the database, its models and migrations
- ``amqp``: what arrives from the events exchange, the RabbitMQ broker class, topology, publishing
- ``commands``: the control commands (users, preferences, topics, cancel, webhook endpoints)
- ``pipeline``: one event's way: admission, ingest, preferences, routing, delivery
- ``rankings``: the match ledger, standings, snapshots, rank-change announcements
- ``jobs``: periodic work (release, sweep, digests, cleanup, job slots)
- ``runtime``: the dramatiq broker, its middleware and the actors
- ``ops``: dead letters, the Procfile supervisor, the JSON Schema
- ``cli``: the ``tidings`` command

``channels/`` (beside this package) holds one module per delivery channel. The entry points are
``dispatcher.worker`` (``dramatiq dispatcher.worker``), ``schedules`` (``periodiq schedules``) and
``dispatcher.cli:main`` (``tidings``).
"""
