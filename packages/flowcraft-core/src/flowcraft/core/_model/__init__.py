"""Blueprint models, loading (including the TypeScript dialect), validation and JSON Schema."""
