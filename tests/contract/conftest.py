"""Contract tests: the running product checked against what ``proto/`` promises.

Each module gets the whole product as processes on a nats-server of its own (the
``stack``/``stack_nats`` fixtures of tests/conftest.py; the nats-server's monitoring port
lets a test see every connection's subscriptions). A module overrides ``stack_env`` for
its knobs.
"""
