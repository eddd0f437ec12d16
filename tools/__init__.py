"""Developer tooling (local stack, benchmarks helpers); not shipped with the services."""
