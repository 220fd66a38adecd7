"""The shape of smsledger's data and the way into it.

Postgres migrations, the event vocabulary, append and read on the event store, and the settings
every process reads once at start. Nothing here imports the rest of smsledger.
"""
