"""Static tooling over blueprints: graph facts, lint and Mermaid rendering."""
