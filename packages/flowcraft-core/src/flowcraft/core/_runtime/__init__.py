"""The in-memory runtime: node forms, node context, middleware, events and FlowRuntime."""
