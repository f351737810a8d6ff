"""The conformance suite against the in-memory backend (the reference run).

The suite's pytest plugin is loaded from flowcraft-core's ``pytest11`` entry point; its default
``flowcraft_backend_factory`` is the in-memory backend, so nothing needs overriding here.
"""
