"""End-to-end tests run the whole product as processes, one stack per module: the
``stack`` and ``stack_nats`` fixtures of tests/conftest.py, built by tests/stacks.py
(a module overrides ``stack_env`` for its knobs)."""
