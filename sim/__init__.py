"""A local stand-in for Twilio: its REST API (Messages, Lookup v2, Verify) in Twilio's JSON
shapes, so the real ``twilio`` client works against it, and signed status callbacks and inbound
messages sent like Twilio sends them. Deterministic from a seed. Used by the demo, the tests and
the benchmarks; never imports smsledger's own packages."""
