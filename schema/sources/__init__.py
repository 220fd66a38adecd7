"""Each source Twilio speaks through, translated into the event vocabulary of
``schema.events``: one module per source (``webhooks``, ``event_streams``, ``messages_api``)."""
