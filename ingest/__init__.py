"""The aiohttp ingester: Twilio webhooks in, immutable events out, answered after commit."""
